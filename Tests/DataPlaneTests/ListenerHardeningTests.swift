#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import COpenSSL
@testable import SciStreamDataPlane
import SciStreamSystem
import SciStreamWire

/// What a stranger can do to a producer-side listener, against the real proxies: offer TLS 1.2,
/// connect and say nothing, open connections by the hundred, fail handshakes by the thousand.
@Suite("Producer-side listeners against strangers", .serialized)
struct ListenerHardeningTests {
    static let tlsTypes: [DataServerType] = [.haproxy, .nginx, .stunnel]

    @Test("the hop is TLS 1.3 only: a TLS 1.2 client with the session's certificate is refused", arguments: tlsTypes)
    func tls12IsRefused(_ type: DataServerType) async throws {
        try await withProdSession(type) { session in
            let keys = session.keys
            let old = await tlsAttempt(port: session.port, certificatePEM: keys.certificatePEM, keyPEM: keys.privateKeyPEM,
                                       maxVersion: Int32(TLS1_2_VERSION))
            #expect(old.handshake.hasPrefix("failed"), "\(old)")
            // Control: the same certificate over TLS 1.3 gets its bytes through.
            let current = await tlsAttempt(port: session.port, certificatePEM: keys.certificatePEM, keyPEM: keys.privateKeyPEM,
                                           readAfterWrite: false)
            #expect(current.handshake == "completed", "\(current)")
            #expect(await session.waitForBytes(4096) == 4096)
            #expect(session.producer.connections == 1)  // the TLS 1.2 attempt reached nothing
        }
    }

    /// All three types at once (the timeout is the product's 10 s, so the test takes about 12 s):
    /// a TCP connection that never starts TLS is closed after the handshake timeout, and a tunnel
    /// that was set up and then stays idle longer than that still carries bytes.
    @Test("a connection that never starts TLS is closed after about 10 s; an idle tunnel is not")
    func silentConnectionsAreClosedIdleTunnelsAreNot() async throws {
        #expect(SessionLimits.handshakeSeconds == 10)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for type in Self.tlsTypes {
                group.addTask { try await Self.silentAndIdle(type) }
            }
            try await group.waitForAll()
        }
    }

    private static func silentAndIdle(_ type: DataServerType) async throws {
        let uid = newUID()
        let prodPort = try freePort()
        let consPort = try freePort()
        try await withPlanePair(type) { prod, cons, producer, prodFolder, consFolder in
            try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(prodPort)],
                                           targets: [loopback(producer.port)], rateKbps: 0))
            try await cons.start(ProxySpec(uid: uid, role: .cons, listeners: [loopback(consPort)],
                                           targets: [loopback(prodPort)], rateKbps: 0))
            // The idle tunnel: connected through CONS (which connects on to PROD at once, and PROD to
            // the producer), then not a byte either way.
            let idle = try await Socket.connect(to: try SocketAddress.resolve(host: "127.0.0.1", port: consPort),
                                                deadline: .now + .seconds(5))
            defer { idle.close() }

            let start = ContinuousClock.now
            let silent = try await Socket.connect(to: try SocketAddress.resolve(host: "127.0.0.1", port: prodPort),
                                                  deadline: .now + .seconds(5))
            defer { silent.close() }
            let outcome: String
            do {
                let bytes = try await silent.read(max: 4096, deadline: start + .seconds(20))
                outcome = bytes.isEmpty ? "closed" : "read \(bytes.count) bytes"
            } catch {
                outcome = "\(error)"
            }
            let elapsed = ContinuousClock.now - start
            #expect(outcome == "closed" || outcome.contains("reset"), "\(type): \(outcome)")
            #expect(elapsed >= .seconds(9) && elapsed <= .seconds(15), "\(type): closed after \(elapsed)")

            // The tunnel has been idle for over 10 s by now: it still carries bytes.
            try await Task.sleep(until: start + .seconds(12))
            let payload = [UInt8](repeating: 0x43, count: 1 << 20)
            try await idle.writeAll(payload, deadline: .now + .seconds(10))
            let deadline = ContinuousClock.now + .seconds(10)
            while producer.bytes < payload.count && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(producer.bytes == payload.count, "\(type): the idle tunnel carried \(producer.bytes) bytes")
            #expect(producer.connections == 1, "\(type)")  // the silent connection reached nothing
        }
    }

    @Test("a session's proxy holds at most its connection cap; a slot freed is taken again", arguments: tlsTypes)
    func connectionsAreCapped(_ type: DataServerType) async throws {
        // stunnel's cap is its client limit, which it derives from its descriptor limit (set by s2cs
        // at spawn), and it needs about ten descriptors of its own: the limit holds exactly from
        // about 200 connections on (the default is 512), so stunnel is tried with 256.
        let cap = type == .stunnel ? 256 : 5
        try await withProdSession(type, maxConnections: cap) { session in
            let (producer, port, keys) = (session.producer, session.port, session.keys)
            guard let pid = await runningPID(session.plane, session.uid) else { return }
            var held: [HeldTLSConnection] = []
            defer { for connection in held { connection.close() } }
            for _ in 0..<cap {
                held.append(await HeldTLSConnection.connect(port: port, certificatePEM: keys.certificatePEM,
                                                            keyPEM: keys.privateKeyPEM))
            }
            let settle = ContinuousClock.now + .seconds(10)
            while producer.connections < cap && ContinuousClock.now < settle { try await Task.sleep(for: .milliseconds(20)) }
            let reached = producer.connections
            #expect(reached == cap, "\(type): \(reached) connections reached the producer")
            #expect(held.allSatisfy { $0.handshake == "completed" }, "\(type)")
            if type == .stunnel {
                let limits = (try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)) ?? ""
                let line = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }.map(String.init) ?? ""
                #expect(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first
                        == "\(SessionLimits.stunnelFileLimit(forClients: cap))", "\(line)")
            }

            // Over the cap: HAProxy leaves it in the kernel's queue, nginx and stunnel close it.
            // The held connections' own bytes first (on a loaded machine the last may still be on its way).
            var bytesBefore = producer.bytes
            let quiet = ContinuousClock.now + .seconds(5)
            repeat {
                bytesBefore = producer.bytes
                try await Task.sleep(for: .milliseconds(300))
            } while producer.bytes != bytesBefore && ContinuousClock.now < quiet
            let over = await tlsAttempt(port: port, certificatePEM: keys.certificatePEM, keyPEM: keys.privateKeyPEM,
                                        readAfterWrite: false, timeoutSeconds: 2)
            try await Task.sleep(for: .milliseconds(300))
            #expect(producer.connections == reached, "\(type): \(over)")
            #expect(producer.bytes == bytesBefore, "\(type): \(over)")
            #expect(over.handshake != "completed", "\(type): \(over)")

            // A slot freed is taken by the next connection.
            held.removeFirst().close()
            let retryUntil = ContinuousClock.now + .seconds(10)
            repeat {
                _ = await tlsAttempt(port: port, certificatePEM: keys.certificatePEM, keyPEM: keys.privateKeyPEM,
                                     readAfterWrite: false, timeoutSeconds: 3)
                try await Task.sleep(for: .milliseconds(100))
            } while producer.connections == reached && ContinuousClock.now < retryUntil
            #expect(producer.connections == reached + 1, "\(type)")
        }
    }

    @Test("failed handshakes by the hundred do not grow the session log past its bound", arguments: tlsTypes)
    func strangersCannotGrowTheLog(_ type: DataServerType) async throws {
        let limit = 16 << 10
        try await withProdSession(type, logLimit: limit) { session in
            let (folder, uid) = (session.folder, session.uid)
            let stranger = try SessionKeys.derive(newSessionID())
            for round in 0..<600 {
                _ = await tlsAttempt(port: session.port, certificatePEM: stranger.certificatePEM, keyPEM: stranger.privateKeyPEM,
                                     readAfterWrite: round % 2 == 0, timeoutSeconds: 2)
                if round % 50 == 49 && folder.exists("\(uid).log.1") { break }
            }
            await session.plane.stop(uid: uid)
            let current = ProxyLog.size(folder.file("\(uid).log"))
            let rotated = ProxyLog.size(folder.file("\(uid).log.1"))
            #expect(rotated > 0, "\(type): the log never reached \(limit) bytes (\(current)): nothing was rotated")
            #expect(current <= limit && rotated <= limit, "\(type): log \(current) bytes, rotated \(rotated) bytes")
            #expect(mode(folder.file("\(uid).log.1")) == 0o600)
            #expect(session.producer.connections == 0)
        }
    }

    @Test("a target named unix (nginx would read unix:5000 as a socket file) is refused before anything is written")
    func unixTargetIsRefused() async throws {
        let folder = try TemporaryFolder("dp-prod")
        let prod = try makePlane(.nginx, folder)
        let uid = newUID()
        let port = try freePort()
        try await withPlanes([prod], folders: [folder]) {
            for host in ["unix", "UNIX", "Unix"] {
                do {
                    try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(port)],
                                                   targets: [ProxyEndpoint(host: host, port: 5000)], rateKbps: 0))
                    Issue.record("target \(host):5000 was accepted")
                } catch {
                    #expect("\(error)".contains("invalid target '\(host):5000'"), "\(error)")
                }
                #expect(folder.contents().isEmpty, "files written: \(folder.contents())")
            }
        }
    }
}

/// Issue 11's race: s2cs and stunnel both wrote `<uid>.pid`, and a stunnel that lost exited after
/// its listeners were up. Now s2cs is the only writer, and every session carries bytes.
@Suite("Stunnel sessions one after another", .serialized)
struct StunnelSequenceTests {
    @Test("20 Stunnel sessions in a row all carry bytes; <uid>.pid holds the proxy's pid, written by s2cs alone")
    func twentyStunnelSessionsCarryBytes() async throws {
        try await withPlanePair(.stunnel) { prod, cons, producer, prodFolder, consFolder in
            for round in 0..<20 {
                let uid = newUID()
                let prodPort = try freePort()
                let consPort = try freePort()
                try await prod.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(prodPort)],
                                               targets: [loopback(producer.port)], rateKbps: 0))
                try await cons.start(ProxySpec(uid: uid, role: .cons, listeners: [loopback(consPort)],
                                               targets: [loopback(prodPort)], rateKbps: 0))
                guard let prodPID = await runningPID(prod, uid), let consPID = await runningPID(cons, uid) else { return }
                #expect(prodFolder.read("\(uid).pid") == "\(prodPID)\n")
                #expect(consFolder.read("\(uid).pid") == "\(consPID)\n")
                #expect(prodFolder.read("\(uid).conf")?.contains("\npid =\n") == true)
                let sent = try await sendRandom(to: consPort, count: 256 << 10)
                let received = await producer.waitForFinished(round + 1, timeout: .seconds(20))
                #expect(received.last == sent, "round \(round)")
                // Both proxies are still the ones that started (neither exited after readiness).
                #expect(await prod.status(uid: uid) == .running(pid: prodPID), "round \(round)")
                #expect(await cons.status(uid: uid) == .running(pid: consPID), "round \(round)")
                await cons.stop(uid: uid)
                await prod.stop(uid: uid)
                #expect(!prodFolder.read("\(uid).log", default: "").contains("Cannot create pid file"))
            }
        }
    }
}

extension TemporaryFolder {
    func read(_ name: String, default fallback: String) -> String { read(name) ?? fallback }
}

/// Logs of released sessions are pruned at start and after each release; a running session's stays.
@Suite("Session logs pruned")
struct SessionLogPruningTests {
    func touch(_ folder: TemporaryFolder, _ name: String, daysAgo: Double) throws {
        try folder.write(name, "a line\n")
        let time = Date().timeIntervalSince1970 - daysAgo * 86400
        var times = [timespec(tv_sec: Int(time), tv_nsec: 0), timespec(tv_sec: Int(time), tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, folder.file(name), &times, 0) == 0)
    }

    @Test("at start: logs older than 7 days go (with their rotated part), newer ones stay")
    func oldLogsArePrunedAtStart() async throws {
        #expect(SessionLog.retention == .seconds(7 * 86400))
        let folder = try TemporaryFolder("dp")
        defer { folder.remove() }
        let old = newUID(), fresh = newUID()
        try touch(folder, "\(old).log", daysAgo: 8)
        try touch(folder, "\(old).log.1", daysAgo: 9)
        try touch(folder, "\(fresh).log", daysAgo: 6)
        try touch(folder, "\(fresh).log.1", daysAgo: 8)  // the newer part decides
        try touch(folder, "notes.log", daysAgo: 30)  // not a session's: not ours to remove
        let sink = LogSink.memory()
        let plane = try DataPlane(type: .mock, folder: folder.path, dataPlaneTLS: true, logger: testLogger(sink))
        _ = await plane.reapStale()
        #expect(folder.contents() == ["\(fresh).log", "\(fresh).log.1", "notes.log"].sorted())
        #expect(sink.recorded.contains { $0.contains("old session logs removed") && $0.contains("count=1") })
    }

    @Test("after a release: at most the 200 newest logs of released sessions are kept; a live session's stays")
    func logsBeyondTheCountArePrunedOnRelease() async throws {
        #expect(SessionLog.maximumKept == 200)
        let folder = try TemporaryFolder("dp")
        defer { folder.remove() }
        let uids = (0..<203).map { _ in newUID() }
        for (index, uid) in uids.enumerated() { try touch(folder, "\(uid).log", daysAgo: Double(index) / 100) }
        let live = newUID()
        try touch(folder, "\(live).log", daysAgo: 30)
        // A live session is one whose config is in the folder (its proxy runs, here or in another s2cs).
        try folder.write("\(live).conf", "# running\n")
        let plane = try DataPlane(type: .mock, folder: folder.path, dataPlaneTLS: true, logger: testLogger())
        let session = try await plane.start(ProxySpec(uid: newUID(), role: .prod, listeners: [loopback(5101)],
                                                      targets: [loopback(5001)], rateKbps: 0))
        await plane.stop(session)
        let left = Set(folder.contents())
        #expect(left == Set(uids.prefix(200).map { "\($0).log" } + ["\(live).log", "\(live).conf"]))  // the three oldest went
        unlink(folder.file("\(live).conf"))
        await plane.stop(session)  // the next prune: the live one's was released, and is 30 days old
        #expect(!folder.exists("\(live).log"))
    }
}

/// Proxy binaries are looked for only where root alone can write.
@Suite("Proxy binaries from trusted directories")
struct TrustedBinaryTests {
    @Test func untrustedPathEntriesAreSkipped() throws {
        let folder = try TemporaryFolder("dp")
        defer { folder.remove() }
        let open = folder.file("open")
        mkdir(open, 0o777)
        chmod(open, 0o777)
        let searched = DataPlane.defaultSearchPath(path: ["", ".", "bin", open, folder.path, "/usr/sbin", "/nonexistent"].joined(separator: ":"))
        #expect(searched == ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin", "/sbin", "/bin"].filter { DataPlane.isTrustedDirectory($0) })
        #expect(searched.contains("/usr/sbin"))
        #expect(!DataPlane.isTrustedDirectory("/tmp"))  // world-writable (sticky)
        #expect(!DataPlane.isTrustedDirectory(folder.path))  // under /tmp
        #expect(!DataPlane.isTrustedDirectory("usr/sbin"))
        #expect(DataPlane.isTrustedDirectory("/"))
    }

    @Test func aPlantedBinaryIsNotRun() throws {
        let folder = try TemporaryFolder("dp")
        defer { folder.remove() }
        try folder.write("haproxy", "#!/bin/sh\ntouch \(folder.file("ran"))\n")
        chmod(folder.file("haproxy"), 0o777)
        // Given the folder as a search directory, the trusted search passes over the file...
        #expect(throws: DataPlaneError.self) {
            _ = try DataPlane.locateBinary(.haproxy, searchPath: [folder.path], requireTrusted: true)
        }
        #expect(try DataPlane.locateBinary(.haproxy, searchPath: [folder.path, "/usr/sbin"], requireTrusted: true) == "/usr/sbin/haproxy")
        // ...which the untrusted one (what tests use for fakes) would take.
        #expect(try DataPlane.locateBinary(.haproxy, searchPath: [folder.path], requireTrusted: false) == folder.file("haproxy"))
    }
}
