/// A duration in the units the system calls and the wire take: one conversion each, not one per caller.
extension Duration {
    /// Whole milliseconds, rounded towards zero (epoll timeouts, log fields, option values).
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// Seconds with their fraction (Foundation's TimeInterval, Prometheus' seconds).
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
