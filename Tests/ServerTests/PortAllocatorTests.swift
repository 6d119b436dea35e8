import Testing
import SciStreamWire
@testable import SciStreamServer

/// The port allocator alone: all or none, never one port twice, round-robin, release gives back.
@Suite struct PortAllocatorTests {
    func allocator(_ lower: UInt16, _ upper: UInt16) throws -> PortAllocator {
        PortAllocator(range: try PortRange(lower: lower, upper: upper))
    }

    @Test func allocatesAllOrNone() throws {
        var ports = try allocator(6000, 6003)
        #expect(ports.allocate(count: 5, isFree: { _ in true }) == nil)
        #expect(ports.freeCount == 4 && ports.reserved.isEmpty)
        // Two of four are in use by someone else: three cannot be had, and nothing is reserved.
        #expect(ports.allocate(count: 3, isFree: { $0 % 2 == 0 }) == nil)
        #expect(ports.reserved.isEmpty)
        #expect(ports.allocate(count: 2, isFree: { $0 % 2 == 0 }) == [6000, 6002])
        #expect(ports.freeCount == 2)
    }

    @Test func neverHandsOutAPortTwiceAndGoesRoundRobin() throws {
        var ports = try allocator(6000, 6002)
        let first = ports.allocate(count: 2, isFree: { _ in true })
        #expect(first == [6000, 6001])
        ports.release([6000])
        // The freed port is not reused at once: the cursor goes on to 6002, then wraps to 6000.
        #expect(ports.allocate(count: 1, isFree: { _ in true }) == [6002])
        #expect(ports.allocate(count: 1, isFree: { _ in true }) == [6000])
        #expect(ports.allocate(count: 1, isFree: { _ in true }) == nil)
        #expect(ports.freeCount == 0)
    }

    @Test func zeroPortsIsNotAnAllocation() throws {
        var ports = try allocator(6000, 6001)
        #expect(ports.allocate(count: 0, isFree: { _ in true }) == nil)
    }

    @Test func reservesExactPortsOnlyInsideTheRangeFreeAndDistinct() throws {
        var ports = try allocator(6000, 6009)
        #expect(ports.reserve([5999], isFree: { _ in true }) == 5999)
        #expect(ports.reserve([6010], isFree: { _ in true }) == 6010)
        #expect(ports.reserve([6001, 6001], isFree: { _ in true }) == 6001)
        #expect(ports.reserve([6001, 6002], isFree: { $0 != 6002 }) == 6002)
        #expect(ports.reserved.isEmpty, "a refused reservation reserves nothing")
        #expect(ports.reserve([6001, 6002], isFree: { _ in true }) == nil)
        #expect(ports.reserve([6002], isFree: { _ in true }) == 6002, "already reserved")
        #expect(ports.freeCount == 8)
        ports.release([6001, 6002])
        #expect(ports.freeCount == 10 && ports.reserved.isEmpty)
    }
}
