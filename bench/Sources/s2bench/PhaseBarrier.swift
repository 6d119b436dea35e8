/// Keeps N session tasks in step: each phase starts when the driver opens it, and ends when every
/// session has arrived (or failed, at this phase or an earlier one). Nothing here blocks a thread.
actor PhaseBarrier {
    let participants: Int
    private var opened: Set<Int> = []
    private var openWaiters: [Int: [CheckedContinuation<Void, Never>]] = [:]
    private var arrivals: [Int: Int] = [:]
    private var failuresAt: [Int: Int] = [:]
    private var doneWaiters: [Int: [CheckedContinuation<Void, Never>]] = [:]
    private(set) var failureMessages: [String] = []

    init(participants: Int) { self.participants = participants }

    /// Sessions that have failed at `phase` or before.
    func failures(upTo phase: Int) -> Int {
        failuresAt.filter { $0.key <= phase }.values.reduce(0, +)
    }

    func successes(at phase: Int) -> Int { arrivals[phase, default: 0] }

    /// The driver: let the sessions start `phase`.
    func open(_ phase: Int) {
        opened.insert(phase)
        for waiter in openWaiters.removeValue(forKey: phase) ?? [] { waiter.resume() }
    }

    /// A session: wait until `phase` is opened.
    func waitUntilOpen(_ phase: Int) async {
        if opened.contains(phase) { return }
        await withCheckedContinuation { openWaiters[phase, default: []].append($0) }
    }

    func arrive(_ phase: Int) {
        arrivals[phase, default: 0] += 1
        wakeIfDone()
    }

    /// A session failed at `phase`; it counts as arrived at this phase and every later one.
    func fail(_ phase: Int, _ message: String) {
        failuresAt[phase, default: 0] += 1
        if failureMessages.count < 10 { failureMessages.append(message) }
        wakeIfDone()
    }

    /// The driver: wait until every session has arrived at `phase` or failed.
    func waitUntilDone(_ phase: Int) async {
        if isDone(phase) { return }
        await withCheckedContinuation { doneWaiters[phase, default: []].append($0) }
    }

    /// The driver's deadline for `phase` passed: stop waiting for it (whatever the count).
    func expire(_ phase: Int) {
        for waiter in doneWaiters.removeValue(forKey: phase) ?? [] { waiter.resume() }
    }

    private func isDone(_ phase: Int) -> Bool {
        successes(at: phase) + failures(upTo: phase) >= participants
    }

    private func wakeIfDone() {
        for phase in Array(doneWaiters.keys) where isDone(phase) {
            for waiter in doneWaiters.removeValue(forKey: phase) ?? [] { waiter.resume() }
        }
    }
}

/// At most `permits` holders at a time (here: connections being opened, so that a burst of TLS
/// handshakes does not all wait behind each other past their deadline).
actor Limiter {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(permits: Int) { available = max(1, permits) }

    func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }
}
