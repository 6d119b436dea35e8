#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import COpenSSL
import SciStreamClient
import SciStreamCommandLine
import SciStreamSystem
import SciStreamWire
import SciStreamTLS

/// `s2bench soak`: for a while, C clients each loop over whole tunnels through two running s2cs
/// (producer side and consumer side, a real proxy type): set up both halves as s2uc does, send
/// random bytes through the consumer-side listener to an in-process producer application, which
/// answers with their SHA-256 back through the tunnel, compare, release both halves. Before and
/// after, it counts what each s2cs holds (descriptors, threads, memory, children, session files).
enum SoakBenchmark {
    static let token = "INVALID_TOKEN"

    struct Gateway: Sendable {
        let target: ControlTarget
        let pid: Int32?
        let folder: String?
    }

    struct Counters: Sendable {
        var completed = 0
        var failures = 0
        var bytes = 0
        var firstErrors: [String] = []
    }

    static func run(prod: Gateway, cons: Gateway, clients: Int, duration: Duration, bytesPerSession: Int) async -> Int32 {
        ProcessProbe.raiseDescriptorLimit()
        let app: ProducerApplication
        do { app = try ProducerApplication() } catch {
            Console.err("Error: cannot start the producer application: \(error)")
            return ExitCode.failure
        }
        defer { app.stop() }
        // Warm up with one session, so that what a gateway opens once on first use (the reaper's
        // descriptors, the first proxy's libraries) is not counted as a leak; then take stock.
        do { try await oneSession(prod: prod, cons: cons, app: app, bytes: bytesPerSession) } catch {
            Console.err("Error: the warm-up session failed: \(error)")
            return ExitCode.failure
        }
        try? await Task.sleep(for: .seconds(1))
        let before = [("prod", snapshot(prod)), ("cons", snapshot(cons))]

        let counters = Shared(Counters())
        let started = ContinuousClock.now
        let end = started + duration
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<clients {
                group.addTask {
                    while ContinuousClock.now < end {
                        do {
                            try await oneSession(prod: prod, cons: cons, app: app, bytes: bytesPerSession)
                            counters.withLock { $0.completed += 1; $0.bytes += bytesPerSession }
                        } catch {
                            counters.withLock {
                                $0.failures += 1
                                if $0.firstErrors.count < 5 { $0.firstErrors.append("\(error)") }
                            }
                        }
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        // Let the gateways finish stopping the last proxies.
        try? await Task.sleep(for: .seconds(1))
        let after = [("prod", snapshot(prod)), ("cons", snapshot(cons))]
        let result = counters.withLock { $0 }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("mode                soak")
        print("clients             \(clients)")
        print("seconds             \(String(format: "%.1f", seconds))")
        print("sessions_completed  \(result.completed)")
        print("sessions_failed     \(result.failures)")
        print("sessions_per_s      \(String(format: "%.1f", Double(result.completed) / max(seconds, 0.001)))")
        print("bytes_verified      \(result.bytes)")
        var leaked = false
        for ((name, first), (_, last)) in zip(before, after) {
            for key in Snapshot.keys {
                let a = first.values[key], b = last.values[key]
                print("\(name)_\(key)_before".padding(toLength: 21, withPad: " ", startingAt: 0) + (a.map(String.init) ?? "n/a"))
                print("\(name)_\(key)_after".padding(toLength: 21, withPad: " ", startingAt: 0) + (b.map(String.init) ?? "n/a"))
                if Snapshot.mustNotGrow.contains(key), let a, let b, b > a + (Snapshot.slack[key] ?? 0) { leaked = true }
            }
        }
        for error in result.firstErrors { Console.err("Error: \(error)") }
        if leaked { Console.err("Error: a gateway holds more descriptors, children or session files than before (or more than 4 more threads)") }
        return result.failures == 0 && !leaked && result.completed > 0 ? ExitCode.success : ExitCode.failure
    }

    // MARK: one session

    static func oneSession(prod: Gateway, cons: Gateway, app: ProducerApplication, bytes: Int) async throws {
        let uid = SessionID.random()
        do {
            let producerListeners = try await setUp(prod.target, uid: uid, role: .prod, hello: ["127.0.0.1:\(app.port)"], listenPorts: [])
            let consumerListeners = try await setUp(cons.target, uid: uid, role: .cons, hello: producerListeners, listenPorts: [])
            guard let first = consumerListeners.first, let endpoint = try? Endpoint.parse(first) else {
                throw BenchError("no consumer listener")
            }
            try await transfer(to: endpoint, count: bytes)
        } catch {
            // Leave nothing behind, whatever step failed (an unknown uid is only NOT_FOUND).
            await release(cons.target, uid: uid)
            await release(prod.target, uid: uid)
            throw error
        }
        await release(cons.target, uid: uid)
        await release(prod.target, uid: uid)
    }

    /// Request, hello on a second connection, update: as s2uc does. Returns the session's listeners.
    static func setUp(_ target: ControlTarget, uid: String, role: Role, hello: [String], listenPorts: [UInt16]) async throws -> [String] {
        let requestConnection = try await ControlConnection.open(target)
        let request = Request(token: token, uid: .bench(uid), role: role, numConn: 1, rate: 0, listenPorts: listenPorts)
        let pending = Task { () async throws(ClientError) -> RequestReply in try await requestConnection.request(request) }
        defer { pending.cancel() }
        let helloConnection = try await ControlConnection.open(target)
        guard try await helloConnection.hello(Hello(token: token, uid: .bench(uid), role: role, prodListeners: hello), timeout: .seconds(60)).isOK else {
            throw BenchError("\(role) hello failed")
        }
        let reply = try await pending.value
        guard reply.status.isOK else { throw BenchError("\(role) request failed: \(reply.status)") }
        let targets = role == .prod ? reply.prodListeners : hello
        let update = try await helloConnection.update(Update(token: token, uid: .bench(uid), role: role, remoteListeners: targets))
        guard update.status.isOK else { throw BenchError("\(role) update: \(update.status)") }
        return update.listeners
    }

    static func release(_ target: ControlTarget, uid: String) async {
        guard let connection = try? await ControlConnection.open(target) else { return }
        _ = try? await connection.release(Release(token: token, uid: .bench(uid)))
    }

    /// Sends `count` random bytes, half-closes, and reads back the application's SHA-256 of them.
    static func transfer(to endpoint: Endpoint, count: Int) async throws {
        let socket = try await Socket.connect(to: SocketAddress.resolve(host: endpoint.host, port: endpoint.port), deadline: .now + .seconds(10))
        defer { socket.close() }
        let digest = SHA256Digest()
        var sent = 0
        var chunk = [UInt8](repeating: 0, count: min(count, 1 << 18))
        while sent < count {
            let size = min(chunk.count, count - sent)
            if size < chunk.count { chunk = [UInt8](repeating: 0, count: size) }
            chunk.withUnsafeMutableBytes { _ = RAND_bytes($0.baseAddress, Int32($0.count)) }
            digest.update(chunk)
            try await socket.writeAll(chunk, deadline: .now + .seconds(60))
            sent += size
        }
        _ = shutdown(socket.fd, Int32(SHUT_WR))
        var answer: [UInt8] = []
        while answer.count < 32 {
            let bytes = try await socket.read(max: 64, deadline: .now + .seconds(60))
            if bytes.isEmpty { break }
            answer += bytes
        }
        guard answer == digest.finish() else {
            throw BenchError("transfer: the producer application's digest of \(count) bytes does not match (\(answer.count) bytes came back)")
        }
    }

    // MARK: what a gateway holds

    struct Snapshot {
        static let keys = ["fds", "threads", "rss_kib", "children", "files"]
        static let mustNotGrow: Set<String> = ["fds", "threads", "children", "files"]
        /// Growth that is not a leak: the dispatch pool behind Swift concurrency starts a thread or
        /// two more under load and keeps them; a thread leaked per session would add thousands.
        static let slack: [String: Int] = ["threads": 4]
        var values: [String: Int] = [:]
    }

    static func snapshot(_ gateway: Gateway) -> Snapshot {
        var snapshot = Snapshot()
        if let pid = gateway.pid {
            snapshot.values["fds"] = ProcessProbe.openDescriptors(pid: pid)
            snapshot.values["rss_kib"] = ProcessProbe.residentKiB(pid: pid)
            snapshot.values["threads"] = ProcessProbe.threads(pid: pid)
            snapshot.values["children"] = ProcessProbe.children(of: pid).count
        }
        if let folder = gateway.folder {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            snapshot.values["files"] = names.filter { !$0.hasSuffix(".log") }.count
        }
        return snapshot
    }
}

/// A value shared by the clients, behind a mutex.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<T>(_ body: (inout Value) -> T) -> T { mutex.withLock { body(&$0) } }
}

/// The producer application: for each connection, reads to EOF and writes back the SHA-256 of what it read.
final class ProducerApplication: Sendable {
    let listener: Socket
    let port: UInt16
    private let serving: Task<Void, Never>

    init() throws {
        let listener = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0))
        self.listener = listener
        self.port = listener.localAddress?.port ?? 0
        serving = Task {
            await withDiscardingTaskGroup { group in
                while let socket = try? await listener.accept() {
                    group.addTask {
                        let digest = SHA256Digest()
                        while let chunk = try? await socket.read(max: 1 << 18, deadline: .now + .seconds(60)), !chunk.isEmpty {
                            digest.update(chunk)
                        }
                        try? await socket.writeAll(digest.finish(), deadline: .now + .seconds(10))
                        socket.close()
                    }
                }
            }
        }
    }

    func stop() {
        serving.cancel()
        listener.close()
    }
}
