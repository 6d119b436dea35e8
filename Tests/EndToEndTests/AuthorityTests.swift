import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire
import SciStreamSystem
import SciStreamTLS
@testable import SciStreamClient
@testable import SciStreamCommandLine
@testable import SciStreamPolicy
@testable import SciStreamServer
import FakeGlobusAuth
import TestPorts

/// What a session's requests got back, step by step, when driven on the wire as s2uc drives them.
struct WireSession {
    var request: Status
    var hello: Status
    var update: Status?
    var listeners: [String] = []
}

/// Drives request, hello and (when both pass) update on the wire with `token`, as s2uc does.
func driveSession(_ target: ControlTarget, token: String = "INVALID_TOKEN", uid: String = SessionID.random(), role: Role = .prod,
                  numConn: UInt32 = 1, listenPorts: [UInt16] = [], targets: [String]) async throws -> WireSession {
    let requestConnection = try await ControlConnection.open(target)
    let pending = Task { () async throws -> RequestReply in
        try await requestConnection.request(Request(token: token, uid: .checked(uid), role: role, numConn: numConn, rate: 0, listenPorts: listenPorts), timeout: .seconds(30))
    }
    let helloConnection = try await ControlConnection.open(target)
    let hello = try await helloConnection.hello(Hello(token: token, uid: .checked(uid), role: role, prodListeners: targets))
    let request = try await pending.value
    var session = WireSession(request: request.status, hello: hello, update: nil)
    guard hello.code == .ok, request.status.code == .ok else { return session }
    let remote = role == .prod ? request.prodListeners : targets
    let update = try await helloConnection.update(Update(token: token, uid: .checked(uid), role: role, remoteListeners: remote))
    session.update = update.status
    session.listeners = update.listeners
    return session
}

/// Sends one request frame on a new connection and returns the reply.
func callOnce(_ target: ControlTarget, _ message: Message) async throws -> Message {
    let connection = try await ControlConnection.open(target)
    return try await connection.call(message, timeout: .seconds(30))
}

extension Daemon {
    var target: ControlTarget {
        ControlTarget(host: "127.0.0.1", port: port, tls: tls ? try? TLSContext.client(trustAnchorPath: Harness.certificates.crt) : nil)
    }

    /// Nothing started, nothing written: no child process and an empty session folder.
    func expectNothingStarted(_ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        let files = sessionFolderEntries(configFolder)
        #expect(files.isEmpty, "nothing written \(comment): \(files)", sourceLocation: sourceLocation)
        #expect(childPIDs(of: pid).isEmpty, "nothing started \(comment)", sourceLocation: sourceLocation)
    }
}

/// This host's non-loopback IPv4 addresses (the gateway's own addresses, as s2cs sees them).
func ownNonLoopbackAddresses() -> [String] {
    TargetPolicy.interfaceAddresses().filter { $0.isIPv4 && !TargetPolicy.isLoopback($0) }.map(\.description)
}

/// Attacks on the control plane, each against a real s2cs: each must fail with the right status and
/// leave nothing started; the positive paths next to them still work.
@Suite(.serialized) struct AuthorityTests {

    // MARK: 1. configuration fails closed

    @Test func anEmptyClientIDOrSecretIsAUsageError() async {
        for (id, secret, flag) in [("abc", "", "--client-secret"), ("abc", "  ", "--client-secret"), ("", "xyz", "--client-id")] {
            let output = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock", "--client-id", id, "--client-secret", secret])
            #expect(output.status == 64, "\(id)/\(secret): \(output.stderr)")
            #expect(output.stderr.hasPrefix("Error: \(flag) is empty"), "\(output.stderr)")
        }
    }

    @Test func withoutAuthenticationS2csWarnsAndNamesTheExposure() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop() }
        let line = daemon.log.split(separator: "\n").first { $0.contains("authentication is off") } ?? ""
        #expect(line.contains(" warning ") && line.contains("anyone who can reach the control port may set up sessions"), "\(line)")
    }

    // MARK: 2. target policy

    @Test func thePivotTargetsAreRefusedWithNothingStarted() async throws {
        // Listeners not on loopback (0.0.0.0): the gateway's loopback is not a demo's application.
        let daemon = try await Daemon(type: "Haproxy", ports: try .reserve(20), extra: ["--listener-ip", "0.0.0.0"])
        defer { daemon.stop() }
        var targets = ["127.0.0.1:22", "localhost:22", "[::1]:22", "[::ffff:127.0.0.1]:22", "[::ffff:7f00:1]:22", "[::127.0.0.1]:22",
                       "169.254.169.254:80", "[fe80::1]:80", "[::ffff:169.254.169.254]:80", "0.0.0.0:22", "224.0.0.1:5000", "255.255.255.255:9"]
        targets += ownNonLoopbackAddresses().map { "\($0):22" }
        for target in targets {
            let session = try await driveSession(daemon.target, targets: [target])
            #expect(session.hello.code == .permissionDenied, "\(target): \(session.hello)")
            #expect(session.hello.message.contains("--allowed-targets"), "\(target): \(session.hello.message)")
            #expect(session.request.code == .permissionDenied, "the request fails too: \(target): \(session.request)")
            #expect(session.update == nil)
        }
        daemon.expectNothingStarted()
        // The refusals freed their ports: the whole range is still there for a normal session.
        let list = await Harness.s2uc(["list"] + daemon.clientArguments)
        #expect(list.lines.count == 1, "no session left: \(list.stdout)")
        // Why is in the server's log, not in the reply.
        #expect(daemon.log.contains("is a loopback address") && daemon.log.contains("is a link-local address"))
    }

    @Test func anUpdateCannotRetargetAnAllowedSessionToARefusedTarget() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let daemon = try await Daemon(type: "Haproxy", ports: try .reserve(10), extra: ["--listener-ip", "0.0.0.0", "--allowed-targets", "127.0.0.1/32:\(app.port)"])
        defer { daemon.stop() }
        // Refused by --allowed-targets: another port of an allowed address.
        let refused = try await driveSession(daemon.target, targets: ["127.0.0.1:\(app.port == 65535 ? 1 : app.port + 1)"])
        #expect(refused.hello.code == .permissionDenied)
        daemon.expectNothingStarted()
        // Allowed: the name is resolved and the config gets the numeric address.
        let uid = SessionID.random()
        let allowed = try await driveSession(daemon.target, uid: uid, targets: ["localhost:\(app.port)"])
        #expect(allowed.update?.code == .ok, "\(allowed)")
        let config = (try? String(contentsOfFile: daemon.configFolder.appendingPathComponent("\(uid).conf").path, encoding: .utf8)) ?? ""
        #expect(config.contains("server s0 127.0.0.1:\(app.port)") && !config.contains("localhost"), "\(config)")
        // A later update that points the live session at the gateway's loopback SSH is refused,
        // and the running proxy keeps its config.
        let update = try await callOnce(daemon.target, .update(Update(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, remoteListeners: ["127.0.0.1:22"])))
        guard case .updateReply(let reply) = update else { Issue.record("unexpected \(update)"); return }
        #expect(reply.status.code == .permissionDenied)
        let after = (try? String(contentsOfFile: daemon.configFolder.appendingPathComponent("\(uid).conf").path, encoding: .utf8)) ?? ""
        #expect(after == config)
        #expect(await Harness.s2uc(["release", uid] + daemon.clientArguments).status == 0)
    }

    @Test func theSeedsLoopbackDemoStillWorks() async throws {
        // --listener-ip 127.0.0.1: loopback targets are this single-host demo's applications.
        let daemon = try await Daemon(ports: try .reserve(10))
        defer { daemon.stop() }
        let output = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--mock", "True", "--num_conn", "1"])
        let (uid, _) = ControlPlaneTests().expectSessionOutput(output, role: "PROD", s2cs: daemon.address)
        #expect(uid == SessionID.mock.text)
        #expect(daemon.log.contains("session uses the documented mock uid: its tunnel key is public"))
        #expect(await Harness.s2uc(["release", uid] + daemon.clientArguments).status == 0)
    }

    // MARK: 3. owners

    @Test func withAuthenticationASessionAnswersOnlyToItsOwner() async throws {
        let fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz")
        defer { fake.stop() }
        let daemon = try await Daemon(ports: try .reserve(10), extra: ["--client-id", "abc", "--client-secret", "xyz"],
                                      environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": fake.baseURL])
        defer { daemon.stop() }
        let scope = "https://auth.globus.org/scopes/abc/scistream"
        let (ada, _) = fake.mint(scope: scope)
        let (eve, _) = fake.mint(scope: scope, username: "eve@example.org", subject: "00000000-0000-4000-8000-0000000000e5")
        let uid = SessionID.random()
        let session = try await driveSession(daemon.target, token: ada, uid: uid, targets: ["127.0.0.1:5001"])
        #expect(session.update?.code == .ok, "\(session)")
        // Eve holds the uid (the other facility does, by design) but not the session.
        for message in [Message.update(Update(token: eve, uid: .checked(uid), role: .prod, remoteListeners: ["127.0.0.1:5002"])),
                        .release(Release(token: eve, uid: .checked(uid))),
                        .hello(Hello(token: eve, uid: .checked(uid), role: .prod, prodListeners: ["127.0.0.1:5002"]))] {
            let reply = try await callOnce(daemon.target, message)
            let status: Status? = switch reply {
            case .updateReply(let update): update.status
            case .releaseReply(let status), .helloReply(let status): status
            default: nil
            }
            #expect(status?.code == .permissionDenied, "\(message.kind): \(String(describing: status))")
        }
        // Eve's list does not show Ada's session; Ada's shows it with its targets.
        guard case .listReply(let eveList) = try await callOnce(daemon.target, .list(ListSessions(token: eve))) else { Issue.record("no list"); return }
        #expect(eveList.sessions.isEmpty, "\(eveList.sessions)")
        guard case .listReply(let adaList) = try await callOnce(daemon.target, .list(ListSessions(token: ada))) else { Issue.record("no list"); return }
        #expect(adaList.sessions.map(\.uid) == [String(uid.prefix(8))])
        #expect(adaList.sessions.first?.targets == ["127.0.0.1:5001"])
        // A token that names nobody (no sub, no username) owns nothing: refused before anything happens.
        let (nobody, _) = fake.mint(scope: scope, username: "", subject: "")
        let anonymous = try await driveSession(daemon.target, token: nobody, targets: ["127.0.0.1:5001"])
        #expect(anonymous.request.code == .unauthenticated && anonymous.hello.code == .unauthenticated, "\(anonymous)")
        // The owner releases it.
        guard case .releaseReply(let released) = try await callOnce(daemon.target, .release(Release(token: ada, uid: .checked(uid)))) else { Issue.record("no release"); return }
        #expect(released.code == .ok)
    }

    @Test func allowedIdentitiesKeepsOtherUsersOut() async throws {
        let fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz")
        defer { fake.stop() }
        let daemon = try await Daemon(ports: try .reserve(10), extra: ["--client-id", "abc", "--client-secret", "xyz", "--allowed-identities", "*@example.org,bob@lab.gov"],
                                      environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": fake.baseURL])
        defer { daemon.stop() }
        let scope = "https://auth.globus.org/scopes/abc/scistream"
        let (mallory, _) = fake.mint(scope: scope, username: "mallory@example.org.evil.net", subject: "00000000-0000-4000-8000-0000000000a1")
        let refused = try await driveSession(daemon.target, token: mallory, targets: ["127.0.0.1:5001"])
        #expect(refused.request.code == .permissionDenied && refused.hello.code == .permissionDenied, "\(refused)")
        #expect(refused.request.message.contains("--allowed-identities"))
        daemon.expectNothingStarted()
        let (bob, _) = fake.mint(scope: scope, username: "bob@lab.gov", subject: "00000000-0000-4000-8000-0000000000b0")
        let accepted = try await driveSession(daemon.target, token: bob, targets: ["127.0.0.1:5001"])
        #expect(accepted.update?.code == .ok, "\(accepted)")

        let withoutAuth = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock", "--allowed-identities", "*@example.org"])
        #expect(withoutAuth.status == 64 && withoutAuth.stderr.contains("--allowed-identities needs authentication"), "\(withoutAuth.stderr)")
    }

    @Test func withoutAuthenticationAnActiveSessionCannotBeRetargeted() async throws {
        let daemon = try await Daemon(ports: try .reserve(10))
        defer { daemon.stop() }
        let uid = SessionID.random()
        let session = try await driveSession(daemon.target, uid: uid, targets: ["127.0.0.1:5001"])
        #expect(session.update?.code == .ok)
        let reply = try await callOnce(daemon.target, .update(Update(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, remoteListeners: ["127.0.0.1:5002"])))
        guard case .updateReply(let update) = reply else { Issue.record("unexpected \(reply)"); return }
        #expect(update.status.code == .permissionDenied)
        #expect(update.status.message.contains("release it and request a new session"), "\(update.status.message)")
    }

    // MARK: 4. ports

    @Test func clientChosenPortsStayInTheRangeAndCannotBreakTheAllocator() async throws {
        let block = try PortBlock.reserve(10)
        let daemon = try await Daemon(ports: block, extra: ["--max-ports-per-client", "10"])
        defer { daemon.stop() }
        let cases: [(Role, UInt32, [UInt16], String)] = [
            (.prod, 1, [block[1]], "only for outbound (CONS) sessions"),
            (.cons, 1, [22], "outside this s2cs's --port-range \(block)"),
            (.cons, 1, [block.upper + 1], "outside this s2cs's --port-range"),
            (.cons, 100, Array(20000...20100), "at most 100 per session"),
            (.cons, 1, [block[1], block[2]], "num_conn is 1"),
        ]
        for (role, numConn, ports, expected) in cases {
            let connection = try await ControlConnection.open(daemon.target)
            let reply = try await connection.call(.request(Request(token: "INVALID_TOKEN", uid: .newRandom(), role: role, numConn: numConn, rate: 0, listenPorts: ports)), timeout: .seconds(10))
            guard case .requestReply(let request) = reply else { Issue.record("unexpected \(reply)"); continue }
            #expect(request.status.code == .invalidArgument, "\(ports.prefix(3)): \(request.status)")
            #expect(request.status.message.contains(expected), "\(request.status.message)")
        }
        // The allocator is intact: the whole range is still there.
        let full = try await driveSession(daemon.target, numConn: 10, targets: ["127.0.0.1:5001"])
        #expect(full.update?.code == .ok, "\(full)")
        #expect(full.listeners.count == 10)
    }

    @Test func oneClientCannotHoldTheWholeRange() async throws {
        let daemon = try await Daemon(ports: try .reserve(10))
        defer { daemon.stop() }
        // Default quota: half the range (5 of 10 ports).
        let first = try await driveSession(daemon.target, numConn: 4, targets: ["127.0.0.1:5001"])
        #expect(first.update?.code == .ok)
        let second = try await driveSession(daemon.target, numConn: 2, targets: ["127.0.0.1:5001"])
        #expect(second.request.code == .resourceExhausted, "\(second.request)")
        #expect(second.request.message.contains("--max-ports-per-client"), "\(second.request.message)")
        let third = try await driveSession(daemon.target, numConn: 1, targets: ["127.0.0.1:5001"])
        #expect(third.update?.code == .ok)
    }

    // MARK: 5. session secrets

    @Test func onlyRandomUIDsOpenSessions() async throws {
        let daemon = try await Daemon(ports: try .reserve(10))
        defer { daemon.stop() }
        // Time-based (v1), name-based (v5) and nil UUIDs are guessable: refused.
        for uid in ["bd9f1a7e-04d7-11f0-b44c-946dae415862", "886313e1-3b8a-5372-9b90-0c9aee199e5d", "00000000-0000-0000-0000-000000000000",
                    "0e0b9c6a-1111-4222-c333-444455556666"] {
            let session = try await driveSession(daemon.target, uid: uid, targets: ["127.0.0.1:5001"])
            #expect(session.request.code == .invalidArgument, "\(uid): \(session.request)")
            #expect(session.request.message.contains("is not a random (version 4) UUID"))
        }
        daemon.expectNothingStarted()
    }

    // MARK: 6. floods

    @Test func aSilentControlConnectionIsClosedAfterTheFrameTimeout() async throws {
        let daemon = try await Daemon(ports: try .reserve(10), extra: ["--frame-timeout", "1"])
        defer { daemon.stop() }
        // After a complete TLS handshake, nothing: closed within about a second.
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port), deadline: .now + .seconds(5))
        let tls = try TLSContext.client(trustAnchorPath: Harness.certificates.crt)
        let stream = try await TLSStream.connect(socket: socket, context: tls, serverName: "127.0.0.1", deadline: .now + .seconds(5))
        let started = ContinuousClock.now
        let bytes = try? await stream.read(max: 100, deadline: .now + .seconds(10))
        #expect(bytes?.isEmpty ?? true, "closed, not answered")
        #expect(ContinuousClock.now - started < .seconds(4), "closed after \(ContinuousClock.now - started)")
        stream.close()
        // A client that answers promptly still gets its requests served on one connection.
        let connection = try await ControlConnection.open(daemon.target)
        for _ in 0..<3 {
            guard case .listReply(let list) = try await connection.call(.list(ListSessions(token: "INVALID_TOKEN")), timeout: .seconds(5)) else { Issue.record("no list"); return }
            #expect(list.status.code == .ok)
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    @Test func oneAddressCannotTakeEveryControlConnection() async throws {
        let daemon = try await Daemon(tls: false, ports: try .reserve(10), extra: ["--max-connections-per-client", "3", "--frame-timeout", "30"])
        defer { daemon.stop() }
        var held: [Socket] = []
        defer { held.forEach { $0.close() } }
        for _ in 0..<3 {
            held.append(try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: daemon.port), deadline: .now + .seconds(5)))
        }
        // Refused once s2cs has accepted the three (asked again until then, for at most 10 s).
        let acceptedBy = ContinuousClock.now + .seconds(10)
        var refused = await Harness.s2uc(["list"] + daemon.clientArguments)
        while refused.status == 0 && ContinuousClock.now < acceptedBy {
            refused = await Harness.s2uc(["list"] + daemon.clientArguments)
        }
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("refused the request") && refused.stderr.contains("--max-connections-per-client 3"), "\(refused.stderr)")
        held.forEach { $0.close() }
        held.removeAll()
        // Served as soon as s2cs has noticed the closes (retried for at most 10 s).
        let deadline = ContinuousClock.now + .seconds(10)
        var served = await Harness.s2uc(["list"] + daemon.clientArguments)
        while served.status != 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            served = await Harness.s2uc(["list"] + daemon.clientArguments)
        }
        #expect(served.status == 0, "\(served.stderr)")
    }

    // MARK: 7. plaintext mode

    @Test func plaintextModeTakesInboundSessionsOnlyWithPeerGateways() async throws {
        let open = try await Daemon(type: "Haproxy", ports: try .reserve(10), extra: ["--data-plane-tls=False"])
        defer { open.stop() }
        #expect(open.log.contains("no --peer-gateways: inbound (PROD) sessions are refused"))
        let refused = try await driveSession(open.target, targets: ["127.0.0.1:5001"])
        #expect(refused.request.code == .permissionDenied && refused.request.message.contains("--peer-gateways"), "\(refused.request)")
        open.expectNothingStarted()

        // Peers elsewhere: the listener exists, but a connection from here reaches nothing.
        let app = try ProducerApp(expectedConnections: 1)
        let fenced = try await Daemon(type: "Haproxy", ports: try .reserve(10), extra: ["--data-plane-tls=False", "--peer-gateways", "192.0.2.0/24"])
        defer { fenced.stop() }
        let uid = SessionID.random()
        let session = try await driveSession(fenced.target, uid: uid, targets: ["127.0.0.1:\(app.port)"])
        #expect(session.update?.code == .ok, "\(session)")
        let config = (try? String(contentsOfFile: fenced.configFolder.appendingPathComponent("\(uid).conf").path, encoding: .utf8)) ?? ""
        #expect(config.contains("acl allowed_source src 192.0.2.0/24\n    tcp-request connection reject unless allowed_source"), "\(config)")
        let listener = session.listeners.first.map { $0.replacingOccurrences(of: "tcp://", with: "") } ?? ""
        let port = UInt16(listener.split(separator: ":").last ?? "") ?? 0
        // sendRandomBytes returns once the listener's side has closed: the stranger was refused at
        // the connection, before anything could be forwarded.
        _ = try? await sendRandomBytes(to: port, count: 4096)
        app.stop()
        let reached = await app.results()
        #expect(reached.allSatisfy { $0.bytes == 0 }, "a stranger's bytes reached the producer application: \(reached)")
        let usage = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock", "--peer-gateways", "10.0.0.1"])
        #expect(usage.status == 64 && usage.stderr.contains("--peer-gateways is for --data-plane-tls=False"), "\(usage.stderr)")
    }

    // MARK: 8. leaks

    @Test func sighupReloadsAndSigquitStopsS2csLikeSigterm() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let daemon = try await Daemon(type: "Haproxy", ports: try .reserve(10))
        defer { daemon.stop() }
        let session = try await driveSession(daemon.target, targets: ["127.0.0.1:\(app.port)"])
        #expect(session.update?.code == .ok)
        let proxies = childPIDs(of: daemon.pid)
        #expect(!proxies.isEmpty)
        // SIGHUP is a reload: s2cs and its proxies go on.
        kill(daemon.pid, SIGHUP)
        try await waitUntil("s2cs logs the reload") { daemon.log.contains("reloaded") }
        #expect(daemon.process.isRunning)
        for pid in proxies { #expect(processExists(pid), "proxy \(pid) ended on SIGHUP") }
        kill(daemon.pid, SIGQUIT)
        daemon.process.waitUntilExit()
        #expect(daemon.process.terminationStatus == 0)
        for pid in proxies { #expect(!processExists(pid), "proxy \(pid) outlived s2cs") }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: daemon.configFolder.path)) ?? []
        #expect(!files.contains { $0.hasSuffix(".key") || $0.hasSuffix(".pem") || $0.hasSuffix(".conf") }, "\(files)")
    }

    @Test func s2ucTakesTheUIDFromTheEnvironmentOrStandardInput() async throws {
        let daemon = try await Daemon(ports: try .reserve(10))
        defer { daemon.stop() }
        // Two sessions, released by a uid kept off the command line.
        let uidA = SessionID.random(), uidB = SessionID.random()
        for uid in [uidA, uidB] {
            #expect(try await driveSession(daemon.target, uid: uid, targets: ["127.0.0.1:5001"]).update?.code == .ok)
        }
        var env = ProcessInfo.processInfo.environment
        env["SCISTREAM_UID"] = uidA
        let fromEnvironment = await Harness.run(Harness.s2uc, ["release"] + daemon.clientArguments, environment: env)
        #expect(fromEnvironment.status == 0 && fromEnvironment.stdout == "Release completed\n", "\(fromEnvironment.stderr)")
        let folder = Harness.temporaryFolder("stdin")
        defer { try? FileManager.default.removeItem(at: folder) }
        let uidFile = folder.appendingPathComponent("uid"), emptyFile = folder.appendingPathComponent("empty")
        try Data((uidB + "\n").utf8).write(to: uidFile)
        try Data().write(to: emptyFile)
        let fromStdin = await Harness.run(Harness.s2uc, ["release", "-"] + daemon.clientArguments, input: uidFile)
        #expect(fromStdin.status == 0 && fromStdin.stdout == "Release completed\n", "\(fromStdin.stderr)")
        let empty = await Harness.run(Harness.s2uc, ["release", "-"] + daemon.clientArguments, input: emptyFile)
        #expect(empty.status == 64 && empty.stderr.contains("standard input is empty"), "\(empty.stderr)")
    }

    /// A hostile "s2cs" answers a release with a message full of terminal escapes and newlines, in
    /// the release's own reply frame or in an `error` frame.
    @Test(arguments: [false, true]) func s2ucEscapesControlCharactersAServerSends(inErrorFrame: Bool) async throws {
        let listener = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0))
        defer { listener.close() }
        let port = listener.localAddress?.port ?? 0
        let server = Task {
            let socket = try await listener.accept()
            defer { socket.close() }
            _ = try await socket.read(max: 65536, deadline: .now + .seconds(10))
            let status = Status(.notFound, "gone\u{1B}]0;pwned\u{07}\n\u{1B}[2JError: fake line")
            let reply = inErrorFrame ? Message.error(status) : Message.releaseReply(status)
            try await socket.writeAll(reply.encoded(), deadline: .now + .seconds(5))
        }
        let output = await Harness.s2uc(["release", SessionID.random(), "--s2cs", "127.0.0.1:\(port)", "--ssl", "False"])
        _ = try? await server.value
        #expect(output.status == 1)
        #expect(!output.stderr.contains("\u{1B}") && !output.stderr.contains("\u{07}"), "\(output.stderr.debugDescription)")
        #expect(output.stderr.split(separator: "\n").count == 1, "one line: \(output.stderr.debugDescription)")
        #expect(output.stderr.contains("gone\\u{1B}]0;pwned\\u{7}\\n\\u{1B}[2JError: fake line"), "\(output.stderr.debugDescription)")
    }

    @Test func aFailedStartTellsTheClientNoLocalPathOrProxyLogText() {
        let failures: [DataPlaneError] = [
            .startFailed(type: .haproxy, session: "4f8583bc", message: "[ALERT] parsing [/root/.scistream/4f8583bc.conf:12]"),
            .startFailed(type: .nginx, session: "4f8583bc", message: "open() \"/etc/nginx/x\" failed"),
            .file(path: "/root/.scistream/4f8583bc*.conf", reason: "No space left on device"),
            .folder(path: "/root/.scistream", reason: "not a folder"),
            .spawnFailed(type: .stunnel, session: "4f8583bc", reason: "exec /usr/bin/stunnel4: permission denied"),
        ]
        for failure in failures {
            let status = ControlServer.remoteStatus(failure, session: "4f8583bc")
            #expect(!status.message.contains("/") && !status.message.contains("ALERT"), "\(status.message)")
            #expect(status.message.contains("4f8583bc") && status.message.contains("s2cs log"))
        }
    }
}

import SciStreamDataPlane

/// The policy itself, in-process: every spelling of an address is judged as the address it reaches.
@Suite struct TargetPolicyTests {
    let policy = TargetPolicy(allowed: nil, allowLoopback: false, ownAddresses: { [IPAddress(numeric: "192.0.2.10")!] })

    @Test(arguments: ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1", "::ffff:7f00:1", "::127.0.0.1", "169.254.169.254", "fe80::1",
                      "::ffff:169.254.169.254", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255", "192.0.2.10", "::ffff:192.0.2.10"])
    func refusedByDefault(_ text: String) throws {
        let address = try #require(IPAddress(numeric: text))
        #expect(policy.refusal(address, port: 80) != nil, "\(text)")
    }

    @Test(arguments: ["10.0.0.5", "192.0.2.11", "2001:db8::5", "::ffff:10.0.0.5", "8.8.8.8"])
    func allowedByDefault(_ text: String) throws {
        let address = try #require(IPAddress(numeric: text))
        #expect(policy.refusal(address, port: 80) == nil, "\(text)")
    }

    @Test func anAllowListDecidesByBlockAndPort() throws {
        let rules = try AddressRule.parseList("10.0.0.0/8:5000-5010,[2001:db8::/32]:5001, 192.0.2.7")
        let policy = TargetPolicy(allowed: rules, allowLoopback: true, ownAddresses: { [] })
        #expect(policy.refusal(IPAddress(numeric: "10.1.2.3")!, port: 5005) == nil)
        #expect(policy.refusal(IPAddress(numeric: "::ffff:10.1.2.3")!, port: 5005) == nil)
        #expect(policy.refusal(IPAddress(numeric: "10.1.2.3")!, port: 5011) != nil)
        #expect(policy.refusal(IPAddress(numeric: "11.1.2.3")!, port: 5005) != nil)
        #expect(policy.refusal(IPAddress(numeric: "2001:db8::1")!, port: 5001) == nil)
        #expect(policy.refusal(IPAddress(numeric: "2001:db9::1")!, port: 5001) != nil)
        #expect(policy.refusal(IPAddress(numeric: "192.0.2.7")!, port: 1) == nil)
        // Loopback only when listed, even for a loopback s2cs; multicast never.
        #expect(policy.refusal(IPAddress(numeric: "127.0.0.1")!, port: 5005) != nil)
        let multicast = try AddressRule.parseList("224.0.0.0/4")
        #expect(TargetPolicy(allowed: multicast, allowLoopback: false, ownAddresses: { [] }).refusal(IPAddress(numeric: "224.0.0.1")!, port: 1) != nil)
    }

    @Test(arguments: ["", "10.0.0.0/33", "10.0.0.0/x", "gw.example.org", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:5-4", "2001:db8::1/129",
                      "[2001:db8::1", "010.0.0.1", "1.2.3", "10.0.0.1,", "10.0.0.1;", "10.0.0.1\n"])
    func badRulesAreRefused(_ text: String) {
        #expect(throws: RuleError.self) { try AddressRule.parseList(text) }
    }

    @Test func identityPatterns() throws {
        let patterns = try IdentityPattern.parseList("*@example.org,Bob@Lab.gov")
        #expect(IdentityPattern.allows(patterns, username: "ada@example.org"))
        #expect(IdentityPattern.allows(patterns, username: "bob@lab.gov"))
        #expect(!IdentityPattern.allows(patterns, username: "ada@example.org.evil.net"))
        #expect(!IdentityPattern.allows(patterns, username: "ada@notexample.org"))
        #expect(!IdentityPattern.allows(patterns, username: nil))
        for bad in ["", "*", "a b@x", "*@", "@x", "a@b@c", "*.x@y", "a@x,"] {
            #expect(throws: UsageError.self) { try IdentityPattern.parseList(bad) }
        }
    }
}
