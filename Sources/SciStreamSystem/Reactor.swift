#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import CSciStream

public enum IOEvent: Sendable {
    case readable, writable
}

/// One thread blocks in poll(2) and resumes the tasks waiting for their descriptors.
///
/// Async code never blocks on a read, accept or connect: it tries the non-blocking call, and on
/// EAGAIN awaits `wait(_:for:deadline:)`, then retries. A waiter whose deadline passes is resumed
/// with `Errno.timedOut`; a cancelled task is resumed with `CancellationError`.
public final class Reactor: Sendable {
    public static let shared = Reactor()

    private struct Waiter {
        let fd: Int32
        let events: Int16
        let deadline: ContinuousClock.Instant?
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var waiters: [UInt64: Waiter] = [:]
        var cancelledBeforeRegistration: Set<UInt64> = []
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())
    private let wakeFD: Int32

    private init() {
        // eventfd: close-on-exec, non-blocking; written to wake the poll thread after a registration.
        wakeFD = scistream_eventfd_nonblock_cloexec()
        precondition(wakeFD >= 0, "eventfd failed: \(Errno.current)")  // no reactor, no daemon: fail at start
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
        let events = Int16(event == .readable ? POLLIN : POLLOUT)
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let alreadyCancelled = state.withLock { state -> Bool in
                    if state.cancelledBeforeRegistration.contains(id) { return true }
                    state.waiters[id] = Waiter(fd: fd, events: events, deadline: deadline, continuation: continuation)
                    return false
                }
                if alreadyCancelled {
                    continuation.resume(throwing: CancellationError())
                } else {
                    wake()
                }
            }
        } onCancel: {
            let waiter = state.withLock { state -> Waiter? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                state.cancelledBeforeRegistration.insert(id)
                return nil
            }
            waiter?.continuation.resume(throwing: CancellationError())
        }
    }

    private func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, MemoryLayout<UInt64>.size)
    }

    private func run() {
        var pollFDs: [pollfd] = []
        var ids: [UInt64] = []
        while true {
            pollFDs.removeAll(keepingCapacity: true)
            ids.removeAll(keepingCapacity: true)
            pollFDs.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0))
            let nearest: ContinuousClock.Instant? = state.withLock { state in
                var nearest: ContinuousClock.Instant? = nil
                for (id, waiter) in state.waiters {
                    pollFDs.append(pollfd(fd: waiter.fd, events: waiter.events, revents: 0))
                    ids.append(id)
                    if let deadline = waiter.deadline, nearest == nil || deadline < nearest! {  // safe: checked nil first
                        nearest = deadline
                    }
                }
                return nearest
            }
            var timeout: Int32 = -1
            if let nearest {
                let remaining = nearest - ContinuousClock.now
                let ms = remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000
                timeout = Int32(clamping: max(0, ms + 1))
            }
            let count = pollFDs.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
            if count < 0 && Errno.current != .interrupted {
                // Nothing sensible to do but retry; a persistent failure would be a bug in the table.
                usleep(1000)
                continue
            }
            if pollFDs[0].revents != 0 {
                var value: UInt64 = 0
                _ = Glibc.read(wakeFD, &value, MemoryLayout<UInt64>.size)
            }
            let now = ContinuousClock.now
            var ready: [(CheckedContinuation<Void, any Error>, (any Error)?)] = []
            state.withLock { state in
                for (index, id) in ids.enumerated() {
                    let revents = pollFDs[index + 1].revents
                    if revents != 0 {
                        if let waiter = state.waiters.removeValue(forKey: id) {
                            ready.append((waiter.continuation, nil))
                        }
                    }
                }
                for (id, waiter) in state.waiters {
                    if let deadline = waiter.deadline, deadline <= now {
                        state.waiters.removeValue(forKey: id)
                        ready.append((waiter.continuation, Errno.timedOut))
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
