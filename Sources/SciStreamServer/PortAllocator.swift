import SciStreamWire

/// Hands out ports from `--port-range`: all or none for a session, never one port twice, and never a
/// port that someone else is using (checked by binding it). Ports come back on release.
struct PortAllocator {
    let range: PortRange
    private(set) var reserved: Set<UInt16> = []
    private var cursor: UInt16

    init(range: PortRange) {
        self.range = range
        self.cursor = range.lower
    }

    var freeCount: Int { range.count - reserved.count }

    /// Reserves `count` ports from the range, round-robin so a freed port is not reused at once.
    /// Returns nil (and reserves nothing) when the range cannot supply them.
    mutating func allocate(count: Int, isFree: (UInt16) -> Bool) -> [UInt16]? {
        guard count > 0, count <= freeCount else { return nil }
        var chosen: [UInt16] = []
        var port = cursor
        for _ in 0..<range.count {
            if !reserved.contains(port) && !chosen.contains(port) && isFree(port) {
                chosen.append(port)
                if chosen.count == count { break }
            }
            port = port == range.upper ? range.lower : port + 1
        }
        guard chosen.count == count else { return nil }
        reserved.formUnion(chosen)
        let last = chosen[chosen.count - 1]
        cursor = last == range.upper ? range.lower : last + 1
        return chosen
    }

    /// Reserves exactly these ports (a consumer's `--receiver_ports`), all inside the range (so that
    /// `freeCount` counts the range only). Returns the first port that is outside, taken or repeated,
    /// or nil when all were reserved.
    mutating func reserve(_ ports: [UInt16], isFree: (UInt16) -> Bool) -> UInt16? {
        var seen: Set<UInt16> = []
        for port in ports {
            if port < range.lower || port > range.upper || reserved.contains(port) || seen.contains(port) || !isFree(port) { return port }
            seen.insert(port)
        }
        reserved.formUnion(ports)
        return nil
    }

    mutating func release(_ ports: [UInt16]) {
        reserved.subtract(ports)
    }
}
