import Foundation
import Testing
import TestPorts
import SciStreamWire
import SciStreamSystem
import SciStreamServer
import FakeGlobusAuth

/// Faults and limits: slow or vanished clients, full ranges, caps, unwritable folders, secrets on disk.
@Suite struct HardeningTests {
    /// `count` connections to `daemon` from each of `hosts`; with a `token`, each sends a `list` with
    /// it and reads the answer (a connection that has sent a request), else each stays silent.
    static func hold(_ daemon: Daemon, from hosts: [String], count: Int, token: String? = nil) async throws -> [Socket] {
        var held: [Socket] = []
        for host in hosts {
            for _ in 0..<count {
                let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port),
                                                      from: SocketAddress.resolve(host: host, port: 0), deadline: .now + .seconds(5))
                held.append(socket)
                if let token {
                    try await socket.writeAll(Message.list(ListSessions(token: token)).encoded(), deadline: .now + .seconds(5))
                    #expect(try await !socket.read(max: 65536, deadline: .now + .seconds(10)).isEmpty, "an answer to \(host)")
                }
            }
        }
        return held
    }

    @Test func overTheConnectionCapClientsAreToldResourceExhausted() async throws {
        let daemon = try await Daemon(tls: false, ports: try .reserve(5), extra: ["--max-connections", "2"])
        defer { daemon.stop() }
        // Two connections that each sent a request (silent ones would make room: see below).
        let held = try await Self.hold(daemon, from: ["127.0.0.1"], count: 2, token: "INVALID_TOKEN")
        let refused = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("--max-connections 2"), "\(refused.stderr)")
        held.forEach { $0.close() }
        // Served as soon as s2cs has noticed the closes (retried for at most 10 s).
        let deadline = ContinuousClock.now + .seconds(10)
        var served = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        while served.status != 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            served = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        }
        #expect(served.status == 0, "\(served.stderr)")
    }

    /// Silent connections from a few addresses, each within --max-connections-per-client, fill
    /// --max-connections: a real client from another address still gets in, in the slot of the
    /// oldest connection that has not finished its TLS handshake (with TLS), or that has sent no
    /// request (in plaintext, also when each address made itself known with a request first).
    @Test(arguments: [(tls: true, madeKnown: false), (tls: false, madeKnown: true)])
    func silentConnectionsFromAFewAddressesCannotKeepAClientOut(tls: Bool, madeKnown: Bool) async throws {
        // (One more per address when each first made itself known: s2cs may not have seen that close yet.)
        let daemon = try await Daemon(tls: tls, ports: try .reserve(5), extra: ["--max-connections", "8", "--max-connections-per-client", madeKnown ? "3" : "2", "--frame-timeout", "60"])
        defer { daemon.stop() }
        let attackers = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
        if madeKnown {
            try await Self.hold(daemon, from: attackers, count: 1, token: "INVALID_TOKEN").forEach { $0.close() }
        }
        let held = try await Self.hold(daemon, from: attackers, count: 2)
        defer { held.forEach { $0.close() } }
        let served = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(served.status == 0, "\(served.stderr)")
        #expect(daemon.log.contains("connection dropped to make room"), "\(daemon.log)")
    }

    /// With authentication on, connections that sent a request with a made-up token, from addresses
    /// never served, fill every slot: such a newcomer is refused, but an address whose token passed
    /// before gets in (its share is a quarter of --max-connections).
    @Test func anAddressServedBeforeKeepsAShare() async throws {
        let fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz")
        defer { fake.stop() }
        let daemon = try await Daemon(tls: false, ports: try .reserve(5), extra: ["--client-id", "abc", "--client-secret", "xyz", "--max-connections", "8",
                                                                      "--max-connections-per-client", "2", "--frame-timeout", "60"],
                                      environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": fake.baseURL])
        defer { daemon.stop() }
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        guard case .listReply(let list) = try await callOnce(daemon.target, .list(ListSessions(token: token))) else { Issue.record("no list reply"); return }
        #expect(list.status.code == .ok, "\(list.status)")
        let held = try await Self.hold(daemon, from: ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"], count: 2, token: "made-up")
        defer { held.forEach { $0.close() } }
        // A newcomer never served is refused: the strangers' connections have sent requests.
        let stranger = try await Self.hold(daemon, from: ["127.0.0.6"], count: 1)
        defer { stranger.forEach { $0.close() } }
        try await stranger[0].writeAll(Message.list(ListSessions(token: "made-up")).encoded(), deadline: .now + .seconds(5))
        var decoder = FrameDecoder()
        decoder.append(try await stranger[0].read(max: 65536, deadline: .now + .seconds(10)))
        guard case .error(let status)? = try decoder.nextMessage() else { Issue.record("no error frame for the stranger"); return }
        #expect(status.code == .resourceExhausted && status.message.contains("--max-connections 8"), "\(status)")
        // The address served before sets a session up (request and hello: two connections).
        let session = try await driveSession(daemon.target, token: token, targets: ["127.0.0.1:5001"])
        #expect(session.update?.code == .ok, "\(session)")
    }

    /// One address's made-up tokens, slow to check, take a share of the 32 introspections s2cs runs
    /// at once, not all of them: another client's new token is checked at once meanwhile.
    @Test func oneAddressesMadeUpTokensCannotHoldEveryIntrospection() async throws {
        let fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz")
        defer { fake.stop() }
        fake.slowForUnknownTokens = .seconds(3)
        let daemon = try await Daemon(tls: false, ports: try .reserve(5), extra: ["--client-id", "abc", "--client-secret", "xyz"],
                                      environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": fake.baseURL])
        defer { daemon.stop() }
        var sockets: [Socket] = []
        defer { sockets.forEach { $0.close() } }
        for index in 0..<32 {
            let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port),
                                                  from: SocketAddress.resolve(host: "127.0.0.2", port: 0), deadline: .now + .seconds(5))
            sockets.append(socket)
            try await socket.writeAll(Message.list(ListSessions(token: "made-up-\(index)")).encoded(), deadline: .now + .seconds(5))
        }
        // Each made-up token has either reached Globus Auth or been answered at once.
        let deadline = ContinuousClock.now + .seconds(10)
        var settled = 0
        repeat {
            var answered = 0
            for socket in sockets where (try? await socket.peek(max: 1, deadline: .now + .milliseconds(1)))?.isEmpty == false { answered += 1 }
            settled = answered + fake.requests.filter { $0.hasSuffix("/introspect") }.count
            if settled < 32 { try await Task.sleep(for: .milliseconds(20)) }
        } while settled < 32 && ContinuousClock.now < deadline
        #expect(settled >= 32)
        let started = ContinuousClock.now
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        guard case .listReply(let list) = try await callOnce(daemon.target, .list(ListSessions(token: token))) else { Issue.record("no list reply"); return }
        #expect(list.status.code == .ok, "\(list.status)")
        #expect(ContinuousClock.now - started < .seconds(2), "waited \(ContinuousClock.now - started) for a slot")
    }

    @Test func sessionsPerClientAreCapped() async throws {
        let daemon = try await Daemon( extra: ["--max-sessions-per-client", "2"])
        defer { daemon.stop() }
        for _ in 0..<2 {
            #expect(await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"]).status == 0)
        }
        let third = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(third.status == 1)
        #expect(third.stderr.contains("RESOURCE_EXHAUSTED") && third.stderr.contains("--max-sessions-per-client 2"), "\(third.stderr)")
    }

    @Test func aFrameTricklingInOneByteAtATimeIsCutOffWhileOthersAreServed() async throws {
        let daemon = try await Daemon(tls: false, ports: try .reserve(5), extra: ["--frame-timeout", "1"])
        defer { daemon.stop() }
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port), deadline: .now + .seconds(5))
        defer { socket.close() }
        let frame = Message.list(ListSessions(token: String(repeating: "x", count: 200))).encoded()
        let started = ContinuousClock.now
        let trickle = Task { () -> Bool in
            for byte in frame {
                do { try await socket.writeAll([byte], deadline: .now + .seconds(1)) } catch { return true }
                try? await Task.sleep(for: .milliseconds(200))
                if (try? await socket.peek(max: 1, deadline: .now + .milliseconds(1))) == [] { return true }
            }
            return false
        }
        // Meanwhile a normal client is served at once.
        let output = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(ContinuousClock.now - started < .seconds(1))
        let cutOff = await trickle.value
        #expect(cutOff, "the server should close a connection whose frame takes longer than --frame-timeout")
        #expect(ContinuousClock.now - started < .seconds(5))
        // The server closes the connection, then logs why: the line may come a moment later.
        try await waitUntil("the daemon logs the cut-off", seconds: 10) { daemon.log.contains("frame not completed in time") }
    }

    @Test func aClientThatVanishesWithAPendingRequestDoesNotLeakItsSession() async throws {
        let daemon = try await Daemon(tls: false, ports: try .reserve(2), extra: ["--max-ports-per-client", "100"], environment: ["S2CS_HELLO_TIMEOUT": "0.5"])
        defer { daemon.stop() }
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port), deadline: .now + .seconds(5))
        let request = Message.request(Request(token: "INVALID_TOKEN", uid: .newRandom(), role: .prod, numConn: 2, rate: 0, listenPorts: []))
        try await socket.writeAll(request.encoded(), deadline: .now + .seconds(5))
        socket.close()
        // The hello timeout (0.5 s) must pass (time, not an event); then its release is awaited.
        try await Task.sleep(for: .milliseconds(500))
        let deadline = ContinuousClock.now + .seconds(10)
        var list = await Harness.s2uc(["list"] + daemon.clientArguments)
        while list.lines.count != 1 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            list = await Harness.s2uc(["list"] + daemon.clientArguments)
        }
        #expect(list.lines.count == 1, "no session left: \(list.stdout)")
        // Both ports came back.
        #expect(await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "2"]).status == 0)
    }

    @Test func aRangeFilledByAnotherProcessIsResourceExhaustedWithNothingHalfMade() async throws {
        let daemon = try await Daemon(type: "Haproxy", ports: try .reserve(3))
        defer { daemon.stop() }
        var squatters: [Socket] = []
        for port in daemon.ports.ports {
            squatters.append(try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: port)))
        }
        let output = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(output.status == 1)
        #expect(output.stderr.contains("RESOURCE_EXHAUSTED") && output.stderr.contains(daemon.ports.description), "\(output.stderr)")
        let files = sessionFolderEntries(daemon.configFolder)
        #expect(files.isEmpty, "nothing written: \(files)")
        #expect(childPIDs(of: daemon.pid).isEmpty)
        squatters.forEach { $0.close() }
        let retry = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1", "--remote_ip", "127.0.0.1"])
        #expect(retry.status == 0, "\(retry.stderr)")
    }

    @Test func anUnusableConfigFolderIsAClearStartupError() async {
        let output = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Haproxy", "--config-folder", "/etc/hostname/scistream"])
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("Error: ") && output.stderr.contains("/etc/hostname/scistream"), "\(output.stderr)")
    }

    @Test func sessionSecretsAreOwnerOnlyAndTheUIDStaysOutOfInfoLogs() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: "Stunnel", extra: [], verbose: false)
        defer { producer.stop() }
        let tunnel = try await TunnelTests.setUp(type: "Stunnel", appPort: app.port, consumerPort: try PortBlock.port(), producer: producer)
        defer { tunnel.consumer.stop() }
        var info = stat()
        #expect(stat(producer.configFolder.path, &info) == 0 && info.st_mode & 0o777 == 0o700)
        for suffix in ["key", "pem", "conf"] {
            let path = producer.configFolder.appendingPathComponent("\(tunnel.uid).\(suffix)").path
            #expect(stat(path, &info) == 0, "\(path) exists")
            #expect(info.st_mode & 0o077 == 0, "\(path) is owner-only")
        }
        #expect(!producer.log.contains(tunnel.uid), "the full uid must not appear in s2cs's info log")
        // Nor on the proxy's command line, which every local user can read with ps.
        let pid = try #require(tunnel.proxyPID(producer))
        let commandLine = try #require(try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8))
        #expect(commandLine.contains("stunnel") && !commandLine.contains(tunnel.uid), "\(commandLine)")
        #expect(producer.log.contains(String(tunnel.uid.prefix(8))))
        await TunnelLifecycleTests.release(tunnel)
        for suffix in ["key", "pem", "conf", "pid"] {
            #expect(!FileManager.default.fileExists(atPath: producer.configFolder.appendingPathComponent("\(tunnel.uid).\(suffix)").path))
        }
    }
}

/// The session folder holds every session's keys: s2cs opens it without following a symbolic link
/// and takes it only if it belongs to the user s2cs runs as, so that a link planted at its path
/// makes s2cs neither chmod the folder it points to nor write keys there.
@Suite struct ConfigFolderTests {
    /// Starts s2cs on `folder` and expects the start-up error naming --config-folder and why.
    func expectRefused(_ folder: String, because reason: String, sourceLocation: SourceLocation = #_sourceLocation) async {
        let output = await Harness.run(Harness.s2cs, ["--port", "0", "--bind", "127.0.0.1", "--ssl=False", "--type", "Mock", "--config-folder", folder],
                                       timeout: .seconds(15), sourceLocation: sourceLocation)
        #expect(output.status == 1, "exit \(output.status): \(output.stderr)", sourceLocation: sourceLocation)
        #expect(output.stderr.hasPrefix("Error: cannot use the session folder \(folder) (--config-folder"), "\(output.stderr)", sourceLocation: sourceLocation)
        #expect(output.stderr.contains(reason), "\(output.stderr)", sourceLocation: sourceLocation)
    }

    @Test func aSymbolicLinkIsRefusedAndWhatItPointsToIsLeftAlone() async throws {
        let base = Harness.temporaryFolder("config-link")
        defer { try? FileManager.default.removeItem(at: base) }
        let real = base.appendingPathComponent("real").path, link = base.appendingPathComponent("link").path
        #expect(mkdir(real, 0o755) == 0 && chmod(real, 0o755) == 0)
        #expect(symlink(real, link) == 0)
        await expectRefused(link, because: "it is a symbolic link")
        var info = stat()
        #expect(stat(real, &info) == 0 && info.st_mode & 0o777 == 0o755, "mode now \(String(info.st_mode & 0o777, radix: 8))")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: real))?.isEmpty == true, "nothing written through the link")
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give the folder to another uid"))
    func aFolderOfAnotherUserIsRefused() async throws {
        let base = Harness.temporaryFolder("config-owner")
        defer { try? FileManager.default.removeItem(at: base) }
        let folder = base.appendingPathComponent("theirs").path
        #expect(mkdir(folder, 0o700) == 0 && chown(folder, 65534, 65534) == 0)
        await expectRefused(folder, because: "it belongs to uid 65534, not to the user s2cs runs as (uid 0)")
    }
}
