#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import TestPorts
import SciStreamSystem

/// The tests' port allocator: blocks never overlap, skip ports someone listens on, stay below the
/// kernel's ephemeral range, and are free again once released.
@Suite struct PortBlockTests {
    @Test func blocksDoNotOverlapAndAvoidTheEphemeralRange() throws {
        let ephemeral = try #require(ephemeralLower())
        let counts = [1, 3, 10, 25, 100]
        let blocks = try counts.map { try PortBlock.reserve($0) }
        for (index, block) in blocks.enumerated() {
            #expect(block.count == counts[index])
            #expect(block.upper < ephemeral, "\(block) reaches into the ephemeral range")
            for other in blocks[(index + 1)...] {
                #expect(!block.ports.overlaps(other.ports), "\(block) overlaps \(other)")
            }
        }
        let singles = try (0..<25).map { _ in try PortBlock.port() }
        #expect(Set(singles).count == 25)
        #expect(singles.allSatisfy { port in !blocks.contains { $0.contains(port) } })
    }

    @Test(arguments: ["127.0.0.1", "::1"])
    func aPortSomeoneListensOnIsNeverHandedOut(host: String) throws {
        // A free block, released, then listened on by "someone else" on one of its ports.
        let ports: ClosedRange<UInt16>
        do { ports = try PortBlock.reserve(10).ports }
        let squatter = try Socket.listen(on: SocketAddress.resolve(host: host, port: ports.lowerBound + 4))
        defer { squatter.close() }
        #expect(!PortBlock.isFree(ports.lowerBound + 4))
        #expect(PortBlock.isFree(ports.lowerBound + 5))
        let next = try PortBlock.reserve(10, preferring: ports.lowerBound)
        #expect(!next.contains(ports.lowerBound + 4), "\(next) holds a port that a listener uses")
    }

    @Test func aReservedSlotIsLockedUntilReleased() throws {
        let lower: UInt16
        do {
            let block = try PortBlock.reserve(10)
            lower = block.lower
            #expect(!Self.lockable(lower), "a reserved slot is locked")
            let again = try PortBlock.reserve(10, preferring: lower)
            #expect(again.lower != lower, "a reserved slot was handed out twice")
            withExtendedLifetime(block) {}
        }
        #expect(Self.lockable(lower), "a released slot is free again")
    }

    static func lockable(_ lower: UInt16) -> Bool {
        let fd = open("\(PortBlock.lockFolder)/\(lower)", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) == 0
    }

    func ephemeralLower() -> UInt16? {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8) else { return nil }
        return text.split(whereSeparator: { $0 == "\t" || $0 == " " || $0 == "\n" }).first.flatMap { UInt16($0) }
    }
}
