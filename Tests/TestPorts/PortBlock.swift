#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem
import Synchronization

/// A block of consecutive TCP ports reserved for one test (an s2cs `--port-range`, a proxy's
/// listeners), so that tests never share ports, in this run or in another test run on the machine.
///
/// Ports are handed out in slots of `slotSize` ports below the kernel's ephemeral range (an outgoing
/// connection may take any port in that range at any moment, so a port from it can be taken between
/// our check and the s2cs bind). A slot is reserved by an exclusive `flock` on its own file in
/// `lockFolder`, held until the block is released (`deinit`) or the process ends, even by SIGKILL;
/// every port of the block must also be bindable now (no other program listens on it). The first slot
/// tried is random, so that concurrent runs rarely contend for the same locks.
public final class PortBlock: Sendable, CustomStringConvertible {
    public static let slotSize = 10
    public static let lockFolder = "/tmp/scistream-test-ports"

    public let lower: UInt16
    public let upper: UInt16
    private let locks: [Int32]

    private init(lower: UInt16, upper: UInt16, locks: [Int32]) {
        self.lower = lower
        self.upper = upper
        self.locks = locks
    }

    deinit {
        for fd in locks { _ = close(fd) }
    }

    /// "lower-upper", as `--port-range` takes it.
    public var description: String { "\(lower)-\(upper)" }
    public var ports: ClosedRange<UInt16> { lower...upper }
    public var count: Int { Int(upper) - Int(lower) + 1 }
    public func contains(_ port: UInt16) -> Bool { ports.contains(port) }
    public subscript(index: Int) -> UInt16 { lower + UInt16(index) }

    /// Reserves `count` consecutive ports (the block may be larger: whole slots), or throws if none
    /// is free after a full sweep of the space.
    /// `preferring` starts the search at that port's slot instead of a random one (for tests of this type).
    public static func reserve(_ count: Int = slotSize, preferring: UInt16? = nil) throws -> PortBlock {
        precondition(count > 0 && count <= 1000, "a test needs between 1 and 1000 ports")
        let space = portSpace()
        let slots = (Int(space.upperBound) - Int(space.lowerBound) + 1) / slotSize
        let wanted = (count + slotSize - 1) / slotSize
        guard slots >= wanted else { throw PortBlockError(description: "no port space below the ephemeral range \(ephemeralRange())") }
        _ = mkdir(lockFolder, 0o777)
        _ = chmod(lockFolder, 0o1777)  // shared by every user's test runs, like /tmp
        let first = preferring.map { (Int($0) - Int(space.lowerBound)) / slotSize } ?? Int.random(in: 0..<slots)
        for step in 0..<slots {
            let slot = (first + step) % (slots - wanted + 1)
            let lower = Int(space.lowerBound) + slot * slotSize
            if let block = tryReserve(lower: lower, slots: wanted, count: count) { return block }
        }
        throw PortBlockError(description: "no \(count) free consecutive ports in \(space) (locks in \(lockFolder))")
    }

    /// One port, never handed out twice in this run: taken in turn from slots that stay reserved
    /// until the run ends (a test that asks for a port number has no block to hold on to).
    public static func port() throws -> UInt16 {
        try singles.withLock { state in
            while true {
                if let block = state.block, state.next < block.count {
                    state.next += 1
                    let port = block[state.next - 1]
                    if isFree(port) { return port }
                    continue
                }
                let block = try reserve(slotSize)
                state.kept.append(block)
                state.block = block
                state.next = 0
            }
        }
    }

    private struct Singles {
        var block: PortBlock? = nil
        var next = 0
        var kept: [PortBlock] = []
    }
    private static let singles = Mutex(Singles())

    private static func tryReserve(lower: Int, slots: Int, count: Int) -> PortBlock? {
        var locks: [Int32] = []
        for slot in 0..<slots {
            let path = "\(lockFolder)/\(lower + slot * slotSize)"
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o666)
            guard fd >= 0 else { break }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                _ = close(fd)
                break
            }
            locks.append(fd)
        }
        let upper = lower + count - 1
        guard locks.count == slots, (lower...upper).allSatisfy({ isFree(UInt16($0)) }) else {
            for fd in locks { _ = close(fd) }
            return nil
        }
        return PortBlock(lower: UInt16(lower), upper: UInt16(upper), locks: locks)
    }

    /// Whether nothing listens on `port` on any IPv4 or IPv6 address (binding the wildcard conflicts
    /// with a listener on any address; SO_REUSEADDR, as the proxies set it, ignores TIME_WAIT).
    public static func isFree(_ port: UInt16) -> Bool {
        Socket.canBind(host: "0.0.0.0", port: port) && Socket.canBind(host: "::", port: port)
    }

    /// 10000 up to the kernel's ephemeral range (32768 on a default Linux), or above it.
    public static func portSpace() -> ClosedRange<UInt16> {
        let ephemeral = ephemeralRange()
        if ephemeral.lowerBound > 12_000 { return 10_000...(ephemeral.lowerBound - 1) }
        return (ephemeral.upperBound + 1)...65_000
    }

    static func ephemeralRange() -> ClosedRange<UInt16> {
        let fd = open("/proc/sys/net/ipv4/ip_local_port_range", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 32_768...60_999 }
        defer { _ = close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &buffer, buffer.count)
        let fields = String(decoding: buffer.prefix(max(count, 0)), as: UTF8.self)
            .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { UInt16($0) }
        guard fields.count == 2, fields[0] <= fields[1] else { return 32_768...60_999 }
        return fields[0]...fields[1]
    }
}

public struct PortBlockError: Error, CustomStringConvertible {
    public let description: String
}
