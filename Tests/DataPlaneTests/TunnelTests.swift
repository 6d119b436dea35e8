import SciStreamWire
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import SciStreamDataPlane
import SciStreamSystem

/// Two gateways' proxies on loopback, real HAProxy, nginx and stunnel:
/// consumer app -> CONS proxy -> (mutual TLS) -> PROD proxy -> producer app.
@Suite("Tunnels through real proxies", .serialized)
struct TunnelTests {
    static let tlsTypes: [DataServerType] = [.haproxy, .nginx, .stunnel]

    @Test("64 MiB arrive intact through PROD and CONS, then both stop cleanly", arguments: tlsTypes)
    func tunnelCarriesBytesIntact(_ type: DataServerType) async throws {
        let sink = LogSink.memory()
        let uid = newUID()
        let prodPorts = [try freePort(), try freePort()]
        let consPorts = [try freePort(), try freePort()]
        try await withPlanePair(type, sink: sink) { prod, cons, producer, prodFolder, consFolder in
            try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: prodPorts.map(loopback),
                                           targets: [loopback(producer.port)], rateKbps: 0))
            try await cons.start(ProxySpec(uid: uid, role: .cons, listeners: consPorts.map(loopback),
                                           targets: prodPorts.map(loopback), rateKbps: 0))
            guard let prodPID = await runningPID(prod, uid), let consPID = await runningPID(cons, uid) else { return }

            // Files: 0600 in a 0700 folder; readiness opened no connection to the application.
            // nginx must write a pid file too: its own, <uid>.nginx.pid (s2cs alone writes <uid>.pid).
            let extensions = type == .nginx ? ["conf", "key", "log", "nginx.pid", "pem", "pid"] : ["conf", "key", "log", "pem", "pid"]
            if type == .nginx { try await waitForNginxPID(uid, in: [prodFolder, consFolder]) }
            for folder in [prodFolder, consFolder] {
                #expect(folder.contents() == (extensions.map { "\(uid).\($0)" } + [launchName(uid)]))
                #expect(mode(folder.path) == 0o700)
                for ext in extensions { #expect(mode(folder.file("\(uid).\(ext)")) == 0o600, "\(ext)") }
            }
            #expect(producer.connections == 0)
            #expect(prodFolder.read("\(uid).pem") == consFolder.read("\(uid).pem"))  // byte-identical on both sides

            // Listener 0 forwards to PROD listener 0, listener 1 to PROD listener 1 (i % count).
            async let big = sendRandom(to: consPorts[0], count: 64 << 20)
            async let small = sendRandom(to: consPorts[1], count: 1 << 20)
            let sent = try await [big, small]
            let received = await producer.waitForFinished(2)
            #expect(received.count == 2)
            #expect(received.sorted { $0.count < $1.count } == sent.sorted { $0.count < $1.count })

            await cons.stop(uid: uid)
            await prod.stop(uid: uid)
            expectGone(prodPID)
            expectGone(consPID)
            #expect(prodFolder.contents() == ["\(uid).log"])  // the log stays for troubleshooting
            #expect(consFolder.contents() == ["\(uid).log"])
            #expect(await prod.status(uid: uid) == nil)
            #expect(sink.recorded.contains { $0.contains("proxy started") && $0.contains("session=\(uid.prefix(8))") })
            #expect(sink.recorded.contains { $0.contains("proxy stopped") })
            #expect(!sink.recorded.contains { $0.contains(uid) }, "the full uid was logged")
            #expect(!sink.recorded.contains { $0.contains("exited unexpectedly") })
        }
    }

    @Test("many short streams that half-close all arrive intact", arguments: tlsTypes)
    func shortStreamsWithHalfCloseArriveIntact(_ type: DataServerType) async throws {
        let uid = newUID()
        let prodPort = try freePort()
        let consPort = try freePort()
        try await withPlanePair(type) { prod, cons, producer, prodFolder, consFolder in
            try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(prodPort)],
                                           targets: [loopback(producer.port)], rateKbps: 0))
            try await cons.start(ProxySpec(uid: uid, role: .cons, listeners: [loopback(consPort)],
                                           targets: [loopback(prodPort)], rateKbps: 0))
            let sent = try await withThrowingTaskGroup(of: ProducerApp.Received.self) { group in
                for index in 0..<12 {
                    group.addTask { try await sendRandom(to: consPort, count: (1 << 19) + index * 4099) }
                }
                var all: [ProducerApp.Received] = []
                for try await one in group { all.append(one) }
                return all
            }
            let received = await producer.waitForFinished(12)
            #expect(received.sorted { $0.count < $1.count } == sent.sorted { $0.count < $1.count })
        }
    }

    @Test("a client without the session certificate is refused; the producer receives nothing", arguments: tlsTypes)
    func strangersAreRefused(_ type: DataServerType) async throws {
        let folder = try TemporaryFolder("dp-prod")
        let prod = try makePlane(type, folder)
        let producer = try ProducerApp()
        let uid = newUID()
        let port = try freePort()
        try await withPlanes([prod], folders: [folder], producer: producer) {
            try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(port)],
                                           targets: [loopback(producer.port)], rateKbps: 0))
            let anonymous = await tlsAttempt(port: port, certificatePEM: nil, keyPEM: nil)
            let other = try SessionKeys.derive(newSessionID())
            let impostor = await tlsAttempt(port: port, certificatePEM: other.certificatePEM, keyPEM: other.privateKeyPEM)
            for attempt in [anonymous, impostor] {
                #expect(!attempt.afterWrite.hasPrefix("read"), "\(attempt)")
            }
            // Both refusals are complete (their handshakes failed) before the member below connects.
            #expect(producer.bytes == 0, "anonymous: \(anonymous); impostor: \(impostor)")
            #expect(producer.connections == 0)

            // Control: the session's own certificate gets through, so the refusals above mean something.
            let keys = try SessionKeys.derive(#require(SessionID(uid)))
            let member = await tlsAttempt(port: port, certificatePEM: keys.certificatePEM, keyPEM: keys.privateKeyPEM,
                                         readAfterWrite: false)
            #expect(member.handshake == "completed")
            let deadline = ContinuousClock.now + .seconds(5)
            while producer.bytes < 4096 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(producer.bytes == 4096, "\(member)")
            // Only the member's connection ever reached the producer: neither refusal was let through late.
            #expect(producer.connections == 1)
        }
    }

    @Test("a CONS of another session cannot reach a PROD", arguments: tlsTypes)
    func differentSessionsDoNotConnect(_ type: DataServerType) async throws {
        let prodPort = try freePort()
        let consPort = try freePort()
        try await withPlanePair(type) { prod, cons, producer, prodFolder, consFolder in
            try await prod.start(ProxySpec(uid: newUID(), role: .prod, listeners: [loopback(prodPort)],
                                           targets: [loopback(producer.port)], rateKbps: 0))
            try await cons.start(ProxySpec(uid: newUID(), role: .cons, listeners: [loopback(consPort)],
                                           targets: [loopback(prodPort)], rateKbps: 0))
            // sendRandom returns once the CONS proxy has closed the connection: its handshake with the
            // PROD was refused (another session's keys), and a PROD reaches the producer only after one.
            _ = try? await sendRandom(to: consPort, count: 1 << 20)
            #expect(producer.bytes == 0)
            #expect(producer.connections == 0)
        }
    }

    @Test("IPv6 listeners and targets (each proxy's own address syntax)", arguments: tlsTypes)
    func ipv6Tunnel(_ type: DataServerType) async throws {
        let uid = newUID()
        let prodPort = try freePort()
        let consPort = try freePort()
        try await withPlanePair(type) { prod, cons, producer, prodFolder, consFolder in
            try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: [ProxyEndpoint(host: "::1", port: prodPort)],
                                           targets: [loopback(producer.port)], rateKbps: 0))
            try await cons.start(ProxySpec(uid: uid, role: .cons, listeners: [ProxyEndpoint(host: "[::1]", port: consPort)],
                                           targets: [ProxyEndpoint(host: "::1", port: prodPort)], rateKbps: 0))
            let sent = try await sendRandom(to: consPort, host: "::1", count: 4 << 20)
            #expect(await producer.waitForFinished(1) == [sent])
        }
    }

    @Test("plaintext mode carries bytes", arguments: [DataServerType.haproxy, .nginx])
    func plaintextCarriesBytes(_ type: DataServerType) async throws {
        let uid = newUID()
        let prodPort = try freePort()
        let consPort = try freePort()
        try await withPlanePair(type, tls: false) { prod, cons, producer, prodFolder, consFolder in
            try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(prodPort)],
                                           targets: [loopback(producer.port)], rateKbps: 0))
            try await cons.start(ProxySpec(uid: uid, role: .cons, listeners: [loopback(consPort)],
                                           targets: [loopback(prodPort)], rateKbps: 0))
            let extensions = type == .nginx ? ["conf", "log", "nginx.pid", "pid"] : ["conf", "log", "pid"]  // nginx's own pid file
            if type == .nginx { try await waitForNginxPID(uid, in: [prodFolder]) }
            #expect(prodFolder.contents() == (extensions.map { "\(uid).\($0)" } + [launchName(uid)]))  // no key material
            let sent = try await sendRandom(to: consPort, count: 64 << 20)
            let received = await producer.waitForFinished(1)
            #expect(received == [sent])
            await cons.stop(uid: uid)
            await prod.stop(uid: uid)
            #expect(prodFolder.contents() == ["\(uid).log"])
        }
    }

    @Test("nginx applies the per-connection rate (kb/s)")
    func nginxRateLimit() async throws {
        let uid = newUID()
        let prodPort = try freePort()
        let consPort = try freePort()
        try await withPlanePair(.nginx) { prod, cons, producer, prodFolder, consFolder in
            try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(prodPort)],
                                           targets: [loopback(producer.port)], rateKbps: 0))
            // 16000 kb/s = 2,000,000 bytes/s per connection.
            try await cons.start(ProxySpec(uid: uid, role: .cons, listeners: [loopback(consPort)],
                                           targets: [loopback(prodPort)], rateKbps: 16000))
            let start = ContinuousClock.now
            let sent = try await sendRandom(to: consPort, count: 6_000_000)
            let received = await producer.waitForFinished(1)
            let elapsed = ContinuousClock.now - start
            #expect(received == [sent])
            #expect(elapsed >= .milliseconds(2000), "6 MB at 2 MB/s took \(elapsed)")
            #expect(elapsed < .seconds(20))
        }
    }
}

/// nginx writes its own pid file once it runs, which may be just after its sockets listen (when
/// `start` returns): wait for it (at most 5 s) before looking at the session folder.
func waitForNginxPID(_ uid: String, in folders: [TemporaryFolder]) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline, !folders.allSatisfy({ FileManager.default.fileExists(atPath: $0.file("\(uid).nginx.pid")) }) {
        try await Task.sleep(for: .milliseconds(10))
    }
}
