import SciStreamClient
import SciStreamWire

/// `s2bench pending`: N requests that all wait for their hello at once, then their N hellos.
///
/// Phases, each started by the driver once the one before has finished for every session:
///   0  open the request connection and send the request (it stays pending: no hello yet);
///      the driver then checks with `list` that the server holds N pending sessions, and times
///      one more whole session set up meanwhile;
///   1  open the hello connection, send the hello; the request's reply must arrive OK;
///   2  send the update on the hello connection (N sessions active);
///   3  send the release, on a connection of its own (as `s2uc release`).
/// Connections live as long as in s2uc: the request's closes when its reply is in, the hello's after
/// the update (s2uc exits), so the server holds N connections while the N requests are pending.
/// With `holdConnections` every connection stays open to the end instead (2N at the peak, all
/// through phase 2), and the release goes on the hello's connection.
struct PendingBenchmark {
    let steps: SessionSteps
    let sessions: Int
    let openConcurrency: Int
    let serverPID: Int32?
    let phaseTimeout: Duration
    let holdConnections: Bool

    enum Phase {
        static let request = 0, hello = 1, update = 2, release = 3
    }

    struct Report {
        var lines: [(String, String)] = []
        var failed = false
        mutating func add(_ key: String, _ value: String) { lines.append((key, value)) }
    }

    func run() async -> Report {
        var report = Report()
        let clock = ContinuousClock()
        report.add("sessions", "\(sessions)")
        if let pid = serverPID {
            report.add("server_fd_limit", ProcessProbe.descriptorLimit(pid: pid).map(String.init) ?? "unknown")
            report.add("rss_idle_kib", ProcessProbe.residentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("rss_anon_idle_kib", ProcessProbe.anonymousResidentKiB(pid: pid).map(String.init) ?? "unknown")
        }
        let fdsIdle = serverPID.flatMap { ProcessProbe.openDescriptors(pid: $0) } ?? 0
        let before: [String: Int]
        do { before = try await steps.states() } catch {
            report.add("error", "the server does not answer list: \(error)")
            report.failed = true
            return report
        }
        let already = before.values.reduce(0, +)

        let barrier = PhaseBarrier(participants: sessions)
        let limiter = Limiter(permits: openConcurrency)
        let steps = self.steps
        let hold = holdConnections
        let sessionTasks = (0..<sessions).map { _ in
            Task { await Self.session(steps: steps, barrier: barrier, limiter: limiter, hold: hold) }
        }
        defer { sessionTasks.forEach { $0.cancel() } }

        // Phase 0: every request sent and held pending by the server.
        let started = clock.now
        await barrier.open(Phase.request)
        guard await finish(Phase.request, barrier, &report) else { return report }
        var pending = 0
        var listTime: Duration = .zero
        while true {
            let asked = clock.now
            do { pending = try await steps.states()["pending", default: 0] } catch {
                report.add("error", "list with \(sessions) requests open: \(error)")
                report.failed = true
                return report
            }
            listTime = clock.now - asked
            if pending >= sessions || clock.now - started > phaseTimeout { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        let allPending = clock.now - started
        report.add("requests_pending_s", format(allPending.seconds, decimals: 3))
        report.add("list_pending_count", "\(pending)")
        report.add("list_ms", format(listTime.milliseconds, decimals: 1))
        if let pid = serverPID {
            report.add("rss_pending_kib", ProcessProbe.residentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("rss_anon_pending_kib", ProcessProbe.anonymousResidentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("fds_pending", ProcessProbe.openDescriptors(pid: pid).map(String.init) ?? "unknown")
        }
        guard pending >= sessions else {
            report.add("error", "list shows \(pending) pending sessions, expected \(sessions)")
            report.failed = true
            return report
        }
        // The server still sets up a new session while it holds them all.
        let extraStart = clock.now
        do {
            try await steps.complete(separateRelease: false)
            report.add("setup_while_pending_ms", format((clock.now - extraStart).milliseconds, decimals: 1))
        } catch {
            report.add("error", "a session set up while \(sessions) were pending failed: \(error)")
            report.failed = true
        }

        // Phase 1: the hellos; every request completes.
        let hellos = clock.now
        await barrier.open(Phase.hello)
        guard await finish(Phase.hello, barrier, &report) else { return report }
        report.add("hellos_to_all_complete_s", format((clock.now - hellos).seconds, decimals: 3))
        report.add("total_s", format((clock.now - started).seconds, decimals: 3))

        // Phase 2: every session active.
        await barrier.open(Phase.update)
        guard await finish(Phase.update, barrier, &report) else { return report }
        if let pid = serverPID {
            if !holdConnections {
                // The clients have closed their connections; give the server a moment to see it.
                let settle = clock.now + .seconds(5)
                while clock.now < settle, (ProcessProbe.openDescriptors(pid: pid) ?? 0) > fdsIdle + 16 {
                    try? await Task.sleep(for: .milliseconds(10))
                }
            }
            report.add("rss_active_kib", ProcessProbe.residentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("rss_anon_active_kib", ProcessProbe.anonymousResidentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("fds_active", ProcessProbe.openDescriptors(pid: pid).map(String.init) ?? "unknown")
        }
        if let active = try? await steps.states()["active", default: 0] {
            report.add("list_active_count", "\(active)")
        }

        // Phase 3: all released.
        await barrier.open(Phase.release)
        guard await finish(Phase.release, barrier, &report) else { return report }
        for task in sessionTasks { await task.value }
        let after = (try? await steps.states()) ?? [:]
        report.add("sessions_left", "\(after.values.reduce(0, +) - already)")
        if let pid = serverPID {
            report.add("rss_released_kib", ProcessProbe.residentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("rss_anon_released_kib", ProcessProbe.anonymousResidentKiB(pid: pid).map(String.init) ?? "unknown")
            report.add("rss_peak_kib", ProcessProbe.peakResidentKiB(pid: pid).map(String.init) ?? "unknown")
        }
        report.add("errors", "0")
        return report
    }

    /// Waits for a phase; false (with the errors in the report) when a session failed or time ran out.
    private func finish(_ phase: Int, _ barrier: PhaseBarrier, _ report: inout Report) async -> Bool {
        let timeout = phaseTimeout
        let watchdog = Task {
            try? await Task.sleep(for: timeout)
            if !Task.isCancelled { await barrier.expire(phase) }
        }
        await barrier.waitUntilDone(phase)
        watchdog.cancel()
        let failures = await barrier.failures(upTo: phase)
        let done = await barrier.successes(at: phase)
        if failures == 0 && done == sessions { return true }
        report.add("errors", "\(failures)")
        if done + failures < sessions {
            report.add("error", "phase \(phase): only \(done + failures) of \(sessions) sessions finished within \(timeout)")
        }
        for message in await barrier.failureMessages { report.add("error", message) }
        report.failed = true
        return false
    }

    /// One session's part: each phase when the driver opens it.
    private static func session(steps: SessionSteps, barrier: PhaseBarrier, limiter: Limiter, hold: Bool) async {
        let uid = SessionID.random()
        await barrier.waitUntilOpen(Phase.request)
        // As in s2uc, the request's reply is read by a task of its own. Each connection sits in a slot,
        // its only owner, which this task empties when s2uc would have exited (after the update).
        guard let requestSlot = await open(steps, limiter, barrier, Phase.request, "request connection") else { return }
        let request = steps.request(uid: uid)
        let pendingReply = Task { () async throws -> RequestReply in
            try await requestSlot.get().request(request)
        }
        defer { pendingReply.cancel() }
        await barrier.arrive(Phase.request)

        await barrier.waitUntilOpen(Phase.hello)
        guard let helloSlot = await open(steps, limiter, barrier, Phase.hello, "hello connection") else { return }
        let targets: [String]
        do {
            try await steps.sendHello(uid: uid, on: helloSlot.get())
            let reply: RequestReply
            do { reply = try await pendingReply.value } catch { throw BenchError("request: \(error)") }
            targets = try steps.checkRequestReply(reply)
        } catch {
            await barrier.fail(Phase.hello, "\(error)")
            return
        }
        await barrier.arrive(Phase.hello)

        await barrier.waitUntilOpen(Phase.update)
        do { try await steps.sendUpdate(uid: uid, targets: targets, on: helloSlot.get()) } catch {
            await barrier.fail(Phase.update, "\(error)")
            return
        }
        if !hold {
            // s2uc exits here: both its connections close.
            requestSlot.connection = nil
            helloSlot.connection = nil
        }
        await barrier.arrive(Phase.update)

        await barrier.waitUntilOpen(Phase.release)
        var releaseSlot = helloSlot
        if !hold {
            // `s2uc release` opens a connection of its own.
            guard let slot = await open(steps, limiter, barrier, Phase.release, "release connection") else { return }
            releaseSlot = slot
        }
        do { try await steps.sendRelease(uid: uid, on: releaseSlot.get()) } catch {
            await barrier.fail(Phase.release, "\(error)")
            return
        }
        await barrier.arrive(Phase.release)
    }

    /// Opens a connection with at most `limiter`'s permits of opens in flight; nil (and the session
    /// failed at `phase`) when it cannot.
    private static func open(_ steps: SessionSteps, _ limiter: Limiter, _ barrier: PhaseBarrier, _ phase: Int,
                             _ what: String) async -> Slot? {
        await limiter.acquire()
        do {
            let slot = Slot(try await steps.open())
            await limiter.release()
            return slot
        } catch {
            await limiter.release()
            await barrier.fail(phase, "\(what): \(error)")
            return nil
        }
    }

    /// Holds a connection until the session lets it go. The reply task reads it once, at its start;
    /// the session task clears it only after awaiting that task's result, so the two never overlap.
    private final class Slot: @unchecked Sendable {
        var connection: ControlConnection?
        init(_ connection: ControlConnection) { self.connection = connection }

        func get() throws(BenchError) -> ControlConnection {
            guard let connection else { throw BenchError("the connection was closed") }
            return connection
        }
    }
}
