import Testing
import Glibc
@testable import SciStreamSystem

/// The reactor's registrations follow the descriptors, not their numbers.
@Suite struct ReactorTests {
    static func socketPair() -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    /// A descriptor closed while a task waits on it leaves the kernel's interest list; a new socket
    /// that gets the same number must still be watched: its waiter wakes when data arrives.
    @Test func aReusedDescriptorNumberIsWatchedAgain() async throws {
        let (stale, stalePeer) = Self.socketPair()
        defer { close(stalePeer) }
        let staleWait = Task { try? await Reactor.shared.wait(stale, for: .readable, deadline: .now + .seconds(10)) }
        // Let the stale waiter register (its wait has no data to wake it).
        for _ in 0..<100 { await Task.yield() }
        close(stale)
        let (fresh, freshPeer) = Self.socketPair()
        defer { close(freshPeer) }
        // The new socket under the old number (the lowest free number may be it already).
        if fresh != stale {
            #expect(dup2(fresh, stale) == stale)
            _ = fcntl(stale, F_SETFD, FD_CLOEXEC)
            close(fresh)
        }
        defer { close(stale) }
        var byte: UInt8 = 1
        #expect(send(freshPeer, &byte, 1, Int32(MSG_NOSIGNAL)) == 1)
        let started = ContinuousClock.now
        try await Reactor.shared.wait(stale, for: .readable, deadline: .now + .seconds(5))
        #expect(ContinuousClock.now - started < .seconds(4), "the wait ended by its deadline, not by the data")
        staleWait.cancel()
        _ = await staleWait.value
    }
}
