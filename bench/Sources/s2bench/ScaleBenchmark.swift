#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import SciStreamSystem
import SciStreamWire

/// `s2bench scale`: N sessions held active at once on one s2cs with real proxies, and what the
/// gateway costs at that size against the same at a few sessions:
/// 1. the first `probe` sessions set up one at a time (each timed), then `list` (as `s2uc list`
///    does: a connection, the handshake, `list` with traffic) and a `/metrics` scrape, each timed
///    `runs` times;
/// 2. the sessions up to N - `probe`, C at a time; the last `probe` one at a time (each timed);
///    `list` and the scrape again; the s2cs's RSS, and the proxies' PSS (every process below the
///    s2cs, /proc/<pid>/smaps_rollup) divided by N;
/// 3. every session released, C at a time; then nothing may be left: no process below the s2cs,
///    no LISTEN socket on a session's port.
struct ScaleBenchmark {
    let steps: SessionSteps
    let sessions: Int
    let concurrency: Int
    let probe: Int
    let runs: Int
    let metrics: Endpoint?
    let serverPID: Int32?
    let leftoverTimeout: Duration
    /// `s2uc list ...`, timed as a whole process at N (nil: not).
    let listCommand: [String]?
    /// Whether every session's traffic is counted (not with --type Mock): list must show it.
    let countsTraffic: Bool
    /// A second s2cs holding no sessions: each of the last `probe` setups is timed right after one
    /// on it, so that the two see the same machine, and what holding N costs the s2cs is told apart
    /// from what the machine's state (a thousand proxies just started) costs any new proxy.
    var control: SessionSteps? = nil

    /// One session set up and held: its uid and its listener ports.
    struct Held: Sendable {
        let uid: String
        let ports: [UInt16]
    }

    func run() async -> Report {
        var report = Report()
        var held: [Held] = []
        let clock = ContinuousClock()
        let shmemBefore = Self.machineShmemKiB()

        // The first `probe`, one at a time.
        var first: [Double] = []
        for _ in 0..<probe {
            let began = clock.now
            do { held.append(try await steps.hold()) } catch {
                return await releaseAll(held, into: report.failing("setting up session \(held.count + 1): \(error)"))
            }
            first.append((clock.now - began).milliseconds)
        }
        report.add("sessions_small", "\(held.count)")
        report.add("setup_first_median_ms", Summary(first).map { format($0.median, decimals: 2) } ?? "-")
        guard await measureReads(at: held.count, label: "small", into: &report) else { return await releaseAll(held, into: report) }

        // The bulk, C at a time.
        let bulk = sessions - 2 * probe
        if bulk > 0 {
            let began = clock.now
            let (made, errors) = await establish(count: bulk)
            held += made
            report.add("bulk_setup_s", format((clock.now - began).seconds, decimals: 2))
            if !errors.isEmpty {
                report.add("errors", "\(errors.count)")
                for message in errors.prefix(5) { report.add("error", message) }
                report.failed = true
                return await releaseAll(held, into: report)
            }
        }

        // The last `probe`, one at a time, once the machine has settled after the bulk: a thousand
        // proxies started C at a time leave work behind them (HAProxy's master re-executes itself
        // once its worker runs), and the last setups should measure what a session costs with N
        // held, not the tail of that burst.
        let settleBegan = clock.now
        await Self.settle(within: .seconds(30))
        report.add("settle_s", format((clock.now - settleBegan).seconds, decimals: 1))
        var last: [Double] = [], beside: [Double] = [], controlHeld: [Held] = []
        for _ in 0..<probe {
            // The control's first, then this s2cs's: the same machine for both.
            for onControl in control == nil ? [false] : [true, false] {
                let began = clock.now
                do {
                    let session = try await (onControl ? control ?? steps : steps).hold()
                    let took = (clock.now - began).milliseconds
                    if onControl { controlHeld.append(session); beside.append(took) } else { held.append(session); last.append(took) }
                } catch {
                    let which = onControl ? "control session \(controlHeld.count + 1)" : "session \(held.count + 1)"
                    report.add("error", "setting up \(which): \(error)")
                    report.failed = true
                    return await releaseAll(held, into: report)
                }
            }
        }
        if let control {
            for session in controlHeld {
                do { try await control.sendRelease(uid: session.uid, on: try await control.open()) } catch {
                    report.add("error", "releasing control session \(session.uid.prefix(8)): \(error)")
                    report.failed = true
                }
            }
        }
        report.add("sessions", "\(held.count)")
        report.add("setup_last_median_ms", Summary(last).map { format($0.median, decimals: 2) } ?? "-")
        if let a = Summary(first)?.median, let b = Summary(last)?.median, a > 0 {
            report.add("setup_last_over_first", format(b / a, decimals: 2))
        }
        if let a = Summary(beside)?.median, let b = Summary(last)?.median, a > 0 {
            report.add("setup_control_median_ms", format(a, decimals: 2))
            report.add("setup_last_over_control", format(b / a, decimals: 2))
        }
        guard await measureReads(at: held.count, label: "full", into: &report) else { return await releaseAll(held, into: report) }

        if let command = listCommand {
            var times: [Double] = []
            for _ in 0..<runs {
                let began = clock.now
                guard await BlockingWork.run({ Self.runQuietly(command) }) else {
                    report.add("error", "\(command.prefix(2).joined(separator: " ")) failed at \(held.count) sessions")
                    report.failed = true
                    return await releaseAll(held, into: report)
                }
                times.append((clock.now - began).milliseconds)
            }
            report.add("s2uc_list_full_median_ms", Summary(times).map { format($0.median, decimals: 2) } ?? "-")
        }
        if let pid = serverPID {
            report.add("rss_kib", ProcessProbe.residentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("rss_anon_kib", ProcessProbe.anonymousResidentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("fds", ProcessProbe.openDescriptors(pid: pid).map(String.init) ?? "unknown")
            let proxies = ProcessProbe.descendants(of: pid)
            let pss = proxies.compactMap { ProcessProbe.proportionalKiB(pid: $0) }.reduce(0, +)
            report.add("proxy_processes", "\(proxies.count)")
            report.add("proxies_pss_kib", "\(pss)")
            report.add("pss_per_session_kib", format(Double(pss) / Double(max(held.count, 1)), decimals: 0))
            // Shared memory that no process maps (HAProxy's TLS session cache once its master has
            // re-executed itself) is in no PSS: the machine's Shmem grows by it.
            if let before = shmemBefore, let now = Self.machineShmemKiB() {
                report.add("shmem_per_session_kib", format(Double(now - before) / Double(max(held.count, 1)), decimals: 0))
            }
        }
        return await releaseAll(held, into: report)
    }

    /// The machine's shared memory (`Shmem` of /proc/meminfo), in KiB.
    static func machineShmemKiB() -> Int? {
        let text = ProcessProbe.procText("/proc/meminfo") ?? ""
        return text.split(separator: "\n").first { $0.hasPrefix("Shmem:") }
            .flatMap { Int($0.dropFirst("Shmem:".count).split(separator: " ").first ?? "") }
    }

    /// Returns once the machine's runnable tasks (`procs_running` in /proc/stat, this one included)
    /// have been at most 2 for a second, or `within` has passed.
    static func settle(within limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        var quietSince: ContinuousClock.Instant? = nil
        while ContinuousClock.now < deadline {
            let stat = ProcessProbe.procText("/proc/stat") ?? ""
            let running = stat.split(separator: "\n").first { $0.hasPrefix("procs_running ") }
                .flatMap { Int($0.dropFirst("procs_running ".count)) } ?? 0
            if running <= 2 {
                let since = quietSince ?? .now
                quietSince = since
                if ContinuousClock.now - since >= .seconds(1) { return }
            } else {
                quietSince = nil
            }
            try? await Task.sleep(for: .milliseconds(50))  // polling for a condition, with a deadline
        }
    }

    /// `list` and (with --metrics) a scrape, `runs` times each, timed; false when one failed.
    private func measureReads(at count: Int, label: String, into report: inout Report) async -> Bool {
        var lists: [Double] = [], scrapes: [Double] = []
        let clock = ContinuousClock()
        // Not timed: the first list after a burst of setups reads what the proxies logged meanwhile.
        do { _ = try await steps.listWithTraffic() } catch {
            report.add("error", "list at \(count) sessions: \(error)"); report.failed = true; return false
        }
        var scrapeBytes = 0
        for _ in 0..<runs {
            var began = clock.now
            do {
                let listed = try await steps.listWithTraffic()
                lists.append((clock.now - began).milliseconds)
                guard listed == (countsTraffic ? count : 0) else {
                    report.add("error", "list at \(count) sessions showed \(listed) with traffic figures")
                    report.failed = true
                    return false
                }
            } catch {
                report.add("error", "list at \(count) sessions: \(error)"); report.failed = true; return false
            }
            guard let metrics else { continue }
            began = clock.now
            do {
                scrapeBytes = try await Self.scrape(metrics)
                scrapes.append((clock.now - began).milliseconds)
            } catch {
                report.add("error", "scrape at \(count) sessions: \(error)"); report.failed = true; return false
            }
        }
        report.add("list_\(label)_median_ms", Summary(lists).map { format($0.median, decimals: 2) } ?? "-")
        if metrics != nil {
            report.add("scrape_\(label)_median_ms", Summary(scrapes).map { format($0.median, decimals: 2) } ?? "-")
            report.add("scrape_\(label)_bytes", "\(scrapeBytes)")
        }
        return true
    }

    /// `count` sessions set up C at a time.
    private func establish(count: Int) async -> ([Held], [String]) {
        let tickets = Tickets(count)
        let steps = self.steps
        var made: [Held] = [], errors: [String] = []
        await withTaskGroup(of: ([Held], [String]).self) { group in
            for _ in 0..<max(1, min(concurrency, count)) {
                group.addTask {
                    var mine: [Held] = [], failed: [String] = []
                    while tickets.take() != nil {
                        do { mine.append(try await steps.hold()) } catch { failed.append("\(error)") }
                    }
                    return (mine, failed)
                }
            }
            for await (part, failed) in group { made += part; errors += failed }
        }
        return (made, errors)
    }

    /// Releases every held session C at a time, then waits (at most `leftoverTimeout`) until no
    /// process is left below the s2cs and no session port listens.
    private func releaseAll(_ held: [Held], into report: Report) async -> Report {
        var report = report
        let clock = ContinuousClock()
        let began = clock.now
        let tickets = Tickets(held.count)
        let steps = self.steps
        let failures = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<max(1, min(concurrency, held.count)) {
                group.addTask {
                    var failed: [String] = []
                    while let index = tickets.take() {
                        do {
                            let connection = try await steps.open()
                            try await steps.sendRelease(uid: held[index].uid, on: connection)
                        } catch { failed.append("release: \(error)") }
                    }
                    return failed
                }
            }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        report.add("release_s", format((clock.now - began).seconds, decimals: 2))
        let ports = Set(held.flatMap(\.ports))
        var processes: [Int32] = [], listening: [UInt16] = []
        let deadline = clock.now + leftoverTimeout
        repeat {
            processes = serverPID.map { ProcessProbe.descendants(of: $0) } ?? []
            listening = Self.listening(ports)
            if processes.isEmpty && listening.isEmpty { break }
            try? await Task.sleep(for: .milliseconds(20))  // polling for a condition, with a deadline
        } while clock.now < deadline
        report.add("left_processes", "\(processes.count)")
        report.add("left_listening_ports", "\(listening.count)")
        if !failures.isEmpty {
            report.add("errors", "\(failures.count)")
            for message in failures.prefix(5) { report.add("error", message) }
            report.failed = true
        }
        if !processes.isEmpty || !listening.isEmpty {
            report.add("error", "after releasing all: \(processes.count) processes (\(processes.prefix(5).map(String.init).joined(separator: " "))) and \(listening.count) session ports still listening")
            report.failed = true
        }
        if !report.failed { report.add("errors", "0") }
        return report
    }

    /// Runs `command` to its end, its output discarded; whether it exited 0. Blocks: call it off the
    /// cooperative pool (`BlockingWork`).
    static func runQuietly(_ command: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])  // safe: never empty (made with the path first)
        process.arguments = Array(command.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// The ports of `ports` that have a LISTEN socket (sock_diag, one dump).
    static func listening(_ ports: Set<UInt16>) -> [UInt16] {
        guard let low = ports.min(), let high = ports.max(),
              let sockets = try? TCPSocket.find([.listen], ports: low...high) else { return [] }
        return Array(Set(sockets.map(\.port)).intersection(ports)).sorted()
    }

    /// GET /metrics on `endpoint`; the body's size. The server closes after the response.
    static func scrape(_ endpoint: Endpoint) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(30)
        let socket = try await Socket.connect(to: try SocketAddress.resolve(host: endpoint.host, port: endpoint.port), deadline: deadline)
        defer { socket.close() }
        try await socket.writeAll(Array("GET /metrics HTTP/1.1\r\nHost: \(endpoint.host)\r\nConnection: close\r\n\r\n".utf8), deadline: deadline)
        var response: [UInt8] = []
        while true {
            let chunk = try await socket.read(max: 1 << 16, deadline: deadline)
            if chunk.isEmpty { break }
            response += chunk
        }
        guard response.starts(with: Array("HTTP/1.1 200 ".utf8)) else {
            throw BenchError("scrape: \(String(decoding: response.prefix(80), as: UTF8.self))")
        }
        return response.count
    }

    /// Hands out the numbers 0..<count to the workers, each once.
    private final class Tickets: Sendable {
        private let next = Atomic<Int>(0)
        let count: Int
        init(_ count: Int) { self.count = count }
        func take() -> Int? {
            let value = next.wrappingAdd(1, ordering: .relaxed).oldValue
            return value < count ? value : nil
        }
    }

    struct Report {
        var lines: [(String, String)] = []
        var failed = false
        mutating func add(_ key: String, _ value: String) { lines.append((key, value)) }
        func failing(_ message: String) -> Report {
            var copy = self
            copy.add("error", message)
            copy.failed = true
            return copy
        }
    }
}

extension SessionSteps {
    /// A session set up and held (`establish`), its connections closed as s2uc's are.
    func hold() async throws(BenchError) -> ScaleBenchmark.Held {
        let (uid, listeners, _) = try await establish()
        return ScaleBenchmark.Held(uid: uid, ports: listeners.compactMap { $0.split(separator: ":").last.flatMap { UInt16($0) } })
    }

    /// `list` with traffic, as `s2uc list` asks it, on a connection of its own; how many sessions
    /// had figures.
    func listWithTraffic() async throws(BenchError) -> Int {
        let connection = try await open()
        let list: ListReply
        do { list = try await connection.list(ListSessions(token: Self.token, wantsTraffic: true), timeout: .seconds(60)) } catch {
            throw BenchError("list: \(error)")
        }
        guard list.status.isOK else { throw BenchError("list: \(list.status)") }
        return list.traffic?.filter { $0.counting != .none }.count ?? 0
    }
}
