#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import CSciStream

public enum IOEvent: Sendable {
    case readable, writable
}

/// One thread blocks in epoll_wait(2) and resumes the tasks waiting for their descriptors.
///
/// Async code never blocks on a read, accept or connect: it tries the non-blocking call, and on
/// EAGAIN awaits `wait(_:for:deadline:)`, then retries. A waiter whose deadline passes is resumed
/// with `Errno.timedOut`; a cancelled task is resumed with `CancellationError`.
///
/// What a wait costs does not grow with the waits that are idle: a gateway with a thousand sessions
/// holds two thousand of them (each proxy's pidfd and log pipe), and a poll(2) set rebuilt and
/// scanned at every registration made each setup slower with every session held. A descriptor is in
/// the epoll set while it has waiters, with the union of their events (level-triggered); only
/// waiters with a deadline are scanned for the timeout. A descriptor closed while waited on leaves
/// the set silently (poll would report POLLNVAL): a sweep every second resumes its waiters, which
/// retry and see the error.
public final class Reactor: Sendable {
    public static let shared = Reactor()

    private struct Waiter {
        let fd: Int32
        let events: UInt32
        let deadline: ContinuousClock.Instant?
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var waiters: [UInt64: Waiter] = [:]
        /// The waiters of each descriptor in the epoll set, and the events it is registered for.
        var byFD: [Int32: (ids: Set<UInt64>, events: UInt32)] = [:]
        /// The waiters that have a deadline.
        var timed: [UInt64: ContinuousClock.Instant] = [:]
        var cancelledBeforeRegistration: Set<UInt64> = []
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())
    private let wakeFD: Int32
    private let epollFD: Int32
    static let sweepInterval: Duration = .seconds(1)

    private init() {
        // eventfd: close-on-exec, non-blocking; written to wake the loop after a registration with a deadline.
        wakeFD = scistream_eventfd_nonblock_cloexec()
        precondition(wakeFD >= 0, "eventfd failed: \(Errno.current)")  // no reactor, no daemon: fail at start
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        precondition(epollFD >= 0, "epoll_create1 failed: \(Errno.current)")  // as above
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = wakeFD
        precondition(epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event) == 0, "epoll_ctl failed: \(Errno.current)")  // as above
        let thread = Thread { [self] in self.run() }
        thread.name = "scistream-reactor"
        thread.start()
    }

    /// Suspends until `fd` is ready for `event` (or has an error/hang-up pending), or the deadline passes.
    public func wait(_ fd: Int32, for event: IOEvent, deadline: ContinuousClock.Instant? = nil) async throws {
        let id = state.withLock { state -> UInt64 in
            state.nextID &+= 1
            return state.nextID
        }
        defer { _ = state.withLock { $0.cancelledBeforeRegistration.remove(id) } }
        let events = event == .readable ? EPOLLIN.rawValue : EPOLLOUT.rawValue
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Outcome { case waiting, cancelled, ready }
                let outcome = state.withLock { state -> Outcome in
                    if state.cancelledBeforeRegistration.contains(id) { return .cancelled }
                    state.waiters[id] = Waiter(fd: fd, events: events, deadline: deadline, continuation: continuation)
                    state.byFD[fd, default: ([], 0)].ids.insert(id)
                    if let deadline { state.timed[id] = deadline }
                    guard refresh(fd, in: &state) else {
                        // Not pollable here (a bad descriptor, a regular file): ready, as poll says;
                        // the caller's retry meets the error.
                        remove(id, in: &state)
                        return .ready
                    }
                    return .waiting
                }
                switch outcome {
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .ready: continuation.resume()
                case .waiting: if deadline != nil { wake() }  // the loop's timeout may be shorter now
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                if let waiter = state.waiters[id] {
                    remove(id, in: &state)
                    return waiter
                }
                state.cancelledBeforeRegistration.insert(id)
                return nil
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Forgets waiter `id` and updates its descriptor's registration.
    private func remove(_ id: UInt64, in state: inout State) {
        guard let waiter = state.waiters.removeValue(forKey: id) else { return }
        state.timed[id] = nil
        state.byFD[waiter.fd]?.ids.remove(id)
        _ = refresh(waiter.fd, in: &state)
    }

    /// Registers `fd` for the union of its waiters' events, or removes it when none is left. False
    /// when the kernel refuses to watch it.
    private func refresh(_ fd: Int32, in state: inout State) -> Bool {
        guard let entry = state.byFD[fd] else { return true }
        let wanted = entry.ids.reduce(UInt32(0)) { $0 | (state.waiters[$1]?.events ?? 0) }
        if wanted == 0 {
            // Already gone if the descriptor was closed: ENOENT or EBADF then, nothing to undo.
            _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
            state.byFD[fd] = nil
            return true
        }
        // Told to the kernel even when the events are the ones registered: the descriptor may have
        // been closed and its number reused since (a close drops the old registration silently), and
        // a new waiter must not wait on a registration that is gone. One epoll_ctl per wait.
        var event = epoll_event()
        event.events = wanted
        event.data.fd = fd
        var result: Int32 = -1
        if entry.events != 0 {
            result = epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event)
            // Closed and its number reused since (the old registration left with the close): add it.
            if result != 0 && Errno.current == .noSuchFileOrDirectory { result = epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) }
        } else {
            result = epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event)
            if result != 0 && Errno.current == .fileExists { result = epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event) }
        }
        guard result == 0 else { return false }
        state.byFD[fd]?.events = wanted
        return true
    }

    private func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, MemoryLayout<UInt64>.size)
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 256)
        var nextSweep = ContinuousClock.now + Self.sweepInterval
        while true {
            let (nearest, waiting) = state.withLock { state in
                (state.timed.values.min(), !state.waiters.isEmpty)
            }
            var timeout: Int32 = -1
            if let until = [nearest, waiting ? nextSweep : nil].compactMap({ $0 }).min() {
                let remaining = until - ContinuousClock.now
                timeout = Int32(clamping: max(0, remaining.wholeMilliseconds + 1))
            }
            let count = events.withUnsafeMutableBufferPointer { epoll_wait(epollFD, $0.baseAddress, Int32($0.count), timeout) }
            if count < 0 && Errno.current != .interrupted {
                // Nothing sensible to do but retry; a persistent failure would be a bug in the table.
                usleep(1000)
                continue
            }
            let now = ContinuousClock.now
            let sweep = now >= nextSweep
            if sweep { nextSweep = now + Self.sweepInterval }
            var ready: [(CheckedContinuation<Void, any Error>, (any Error)?)] = []
            state.withLock { state in
                for event in events.prefix(max(0, Int(count))) {
                    let fd = event.data.fd
                    if fd == wakeFD {
                        var value: UInt64 = 0
                        _ = Glibc.read(wakeFD, &value, MemoryLayout<UInt64>.size)
                        continue
                    }
                    // Error and hang-up wake every waiter of the descriptor, as poll does.
                    let fired = event.events
                    for id in state.byFD[fd]?.ids ?? [] {
                        guard let waiter = state.waiters[id],
                              fired & (waiter.events | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 else { continue }
                        remove(id, in: &state)
                        ready.append((waiter.continuation, nil))
                    }
                }
                for (id, deadline) in state.timed where deadline <= now {
                    if let waiter = state.waiters[id] {
                        remove(id, in: &state)
                        ready.append((waiter.continuation, Errno.timedOut))
                    }
                }
                if sweep {
                    // Descriptors closed while waited on (poll's POLLNVAL): their waiters retry.
                    for (fd, entry) in state.byFD where fcntl(fd, F_GETFD) == -1 && Errno.current == .badFileDescriptor {
                        for id in entry.ids {
                            if let waiter = state.waiters[id] {
                                remove(id, in: &state)
                                ready.append((waiter.continuation, nil))
                            }
                        }
                    }
                }
            }
            for (continuation, error) in ready {
                if let error {
                    continuation.resume(throwing: error)
                } else {
                    continuation.resume()
                }
            }
        }
    }
}
