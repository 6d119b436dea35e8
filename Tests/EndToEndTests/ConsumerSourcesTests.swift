import Foundation
import Testing
import SciStreamWire
import SciStreamSystem
import TestPorts
#if canImport(Glibc)
import Glibc
#endif

/// Issue 23 section 3: a consumer-side listener holds the session key, so only the consumer
/// applications may connect to it: by default loopback (127.0.0.1, ::1) and the requester's address,
/// else `--cons-allowed-sources`. Real s2cs, real proxies; the stranger's socket is bound to another
/// loopback address (127.0.0.9) before it connects.
@Suite(.serialized) struct ConsumerSourcesTests {
    /// What a connection from `source` to `port` got: it sends `payload`, half-closes, reads to the end.
    enum Attempt: Equatable {
        /// The connection never completed (the proxy's socket filter dropped its SYN: stunnel).
        case neverConnected
        /// Connected, then closed by the far end (refused by the proxy, or the tunnel ended normally).
        case closed
    }

    static func attempt(from source: String, to port: UInt16, payload: [UInt8]) async -> Attempt {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: blockingAttempt(from: source, to: port, payload: payload)) }
        }
    }

    /// Blocking on a dispatch thread, with poll deadlines: connect (3 s), send, read until EOF or reset (10 s).
    private static func blockingAttempt(from source: String, to port: UInt16, payload: [UInt8]) -> Attempt {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .neverConnected }
        defer { close(fd) }
        func address(_ host: String, _ port: UInt16) -> sockaddr_in {
            var value = sockaddr_in()
            value.sin_family = sa_family_t(AF_INET)
            value.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &value.sin_addr)
            return value
        }
        var local = address(source, 0)
        var remote = address("127.0.0.1", port)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { return .neverConnected }
        _ = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&entry, 1, 3000) == 1 else { return .neverConnected }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        guard error == 0 else { return .neverConnected }
        var sent = 0
        while sent < payload.count {
            var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&ready, 1, 10_000) == 1 else { break }
            let count = payload[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { break }  // reset by the proxy: refused
            sent += count
        }
        shutdown(fd, Int32(SHUT_WR))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 10_000) == 1 else { return .closed }
            if recv(fd, &buffer, buffer.count, 0) <= 0 { return .closed }
        }
    }

    static func randomBytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255) } }

    static func digest(_ bytes: [UInt8]) -> String {
        let digest = Digest()
        digest.update(bytes)
        return digest.finish()
    }

    /// Sets up a tunnel of `type` whose consumer-side s2cs gets `consumerExtra`; `admitted` must
    /// get its bytes through to the producer application, `refused` not one.
    func check(type: String, consumerExtra: [String], admitted: String, refused: String) async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: type)
        let consumer = try await Daemon(type: type, extra: consumerExtra)
        defer { producer.stop(); consumer.stop() }
        let tunnel = try await TunnelTests.setUp(type: type, appPort: app.port, consumerPort: consumer.ports.ports.last ?? 0,
                                                 producer: producer, consumer: consumer)
        // The stranger first: had its connection gone through, it would be the one the app accepts.
        let stranger = await Self.attempt(from: refused, to: tunnel.consumerPort, payload: Self.randomBytes(4096))
        if type == "Stunnel" {
            #expect(stranger == .neverConnected, "\(type): the filter drops the stranger's SYN")
        }
        let payload = Self.randomBytes(256 << 10)
        let outcome = await Self.attempt(from: admitted, to: tunnel.consumerPort, payload: payload)
        #expect(outcome == .closed, "\(type): \(admitted) connects")
        let received = await app.results()
        #expect(received.count == 1 && received.first?.bytes == payload.count && received.first?.sha256 == Self.digest(payload),
                "\(type): only \(admitted)'s bytes reach the producer application: \(received)\n\(consumer.log)")
        let config = (try? String(contentsOf: consumer.configFolder.appendingPathComponent("\(tunnel.uid).conf"), encoding: .utf8)) ?? ""
        switch type {
        case "Haproxy": #expect(config.contains("acl allowed_source src ") && config.contains("tcp-request connection reject unless allowed_source"), "\(config)")
        case "Nginx": #expect(config.contains("        deny all;"), "\(config)")
        default: break
        }
        for daemon in [producer, consumer] {
            #expect(await Harness.s2uc(["release", tunnel.uid] + daemon.clientArguments).status == 0)
        }
    }

    @Test(arguments: TunnelTests.types)
    func byDefaultLoopbackAndTheRequesterConnectAndAnotherAddressIsRefused(type: String) async throws {
        try await check(type: type, consumerExtra: [], admitted: "127.0.0.1", refused: "127.0.0.9")
    }

    @Test(arguments: TunnelTests.types)
    func consAllowedSourcesNamesTheOnlySources(type: String) async throws {
        try await check(type: type, consumerExtra: ["--cons-allowed-sources", "127.0.0.9/32"], admitted: "127.0.0.9", refused: "127.0.0.1")
    }

    /// Stunnel has no source ACL, and the kernel lets only a process with CAP_NET_ADMIN filter a
    /// socket: an unprivileged s2cs (a user's shell, the tutorial's machines) still serves consumer
    /// sessions, says at start that their listeners accept any source, and does not start at all
    /// when the operator named sources it could not enforce.
    @Test func anUnprivilegedStunnelS2csSaysItsConsumerListenersAreOpenAndRefusesNamedSources() async throws {
        try #require(getuid() == 0, "starting s2cs as another user needs root")
        let nobody: [String] = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        let folders = Harness.temporaryFolder("unprivileged")
        defer { try? FileManager.default.removeItem(at: folders) }
        func ownFolder(_ name: String) throws -> URL {
            let url = folders.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            #expect(chown(folders.path, 65534, 65534) == 0 && chown(url.path, 65534, 65534) == 0)
            return url
        }

        // Named sources it cannot enforce: exit 1, the flag and the remedy named, nothing written.
        let refusedFolder = try ownFolder("refused")
        let refused = await Harness.run(nobody[0], Array(nobody.dropFirst()) + [Harness.s2cs, "--port", "0", "--bind", "127.0.0.1", "--ssl=False", "--type", "Stunnel",
                                                    "--config-folder", refusedFolder.path, "--cons-allowed-sources", "127.0.0.1/32"])
        #expect(refused.status == 1, "\(refused.stdout) \(refused.stderr)")
        #expect(refused.stderr.contains("--cons-allowed-sources cannot be enforced with --type Stunnel") && refused.stderr.contains("CAP_NET_ADMIN"), "\(refused.stderr)")
        #expect(!refused.stdout.contains("s2cs listening on"))
        #expect(sessionFolderEntries(refusedFolder).isEmpty)

        // Without the flag: warned at start, and a tunnel through an unprivileged consumer side works.
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: "Stunnel", tls: false)
        let consumer = try await Daemon(type: "Stunnel", tls: false, sessionFolder: try ownFolder("consumer"), launcher: nobody)
        defer { producer.stop(); consumer.stop() }
        let warning = consumer.log.split(separator: "\n").first { $0.contains("consumer-side listeners accept any source") } ?? ""
        #expect(warning.contains(" warning ") && warning.contains("CAP_NET_ADMIN") && warning.contains("SO_ATTACH_FILTER"), "\(consumer.log)")
        let tunnel = try await TunnelTests.setUp(type: "Stunnel", appPort: app.port, consumerPort: consumer.ports.ports.last ?? 0,
                                                 producer: producer, consumer: consumer)
        let payload = Self.randomBytes(256 << 10)
        #expect(await Self.attempt(from: "127.0.0.1", to: tunnel.consumerPort, payload: payload) == .closed)
        let received = await app.results()
        #expect(received.count == 1 && received.first?.sha256 == Self.digest(payload), "\(received)\n\(consumer.log)")
        for daemon in [producer, consumer] {
            #expect(await Harness.s2uc(["release", tunnel.uid] + daemon.clientArguments).status == 0)
        }
    }

    @Test func aBadValueIsAUsageErrorNamingTheFlag() async {
        for value in ["10.0.0.0/33", "example.org", "10.0.0.1:5000", "", "10.0.0.1,,10.0.0.2", "10.0.0.1\nlisten x"] {
            let output = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock", "--cons-allowed-sources", value])
            #expect(output.status == 64, "\(value): exit \(output.status)")
            #expect(output.stderr.hasPrefix("Error: bad --cons-allowed-sources: "), "\(value): \(output.stderr)")
            #expect(!output.stdout.contains("s2cs listening on"))
        }
    }

    @Test func aWildcardConsBindWithoutTheFlagIsWarnedAbout() async throws {
        let wildcard = try await Daemon(ports: try .reserve(2), extra: ["--cons-listener-ip", "0.0.0.0"])
        let line = wildcard.log.split(separator: "\n").first { $0.contains("consumer-side listeners bind every address") } ?? ""
        wildcard.stop()
        #expect(line.contains(" warning ") && line.contains("127.0.0.1/32,::1/128 and the address that requested each session")
                && line.contains("--cons-allowed-sources"), "\(line)")
        let named = try await Daemon(ports: try .reserve(2), extra: ["--cons-listener-ip", "0.0.0.0", "--cons-allowed-sources", "192.0.2.0/24"])
        let log = named.log
        named.stop()
        #expect(!log.contains("consumer-side listeners bind every address") && log.contains("allowed=192.0.2.0/24"), "\(log)")
    }
}
