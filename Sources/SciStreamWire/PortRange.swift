/// An inclusive range of ports, written `5100-5200` (s2cs `--port-range`).
public struct PortRange: Equatable, Hashable, Sendable, CustomStringConvertible {
    public let lower: UInt16
    public let upper: UInt16

    /// Throws `.reversedPortRange` if `lower > upper` and `.portOutOfRange` for port 0.
    public init(lower: UInt16, upper: UInt16) throws(ValidationError) {
        guard lower >= 1 else { throw .portOutOfRange(String(lower)) }
        guard lower <= upper else { throw .reversedPortRange("\(lower)-\(upper)") }
        self.lower = lower
        self.upper = upper
    }

    private init(checkedLower lower: UInt16, upper: UInt16) {
        self.lower = lower
        self.upper = upper
    }

    /// s2cs's default `--port-range`, 5100-5200.
    public static let scistreamDefault = PortRange(checkedLower: 5100, upper: 5200)

    /// `"5100-5200"`: two ports (digits only) joined by one '-', the first not greater than the second.
    public static func parse(_ text: String) throws(ValidationError) -> PortRange {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty,
              parts.allSatisfy({ $0.utf8.allSatisfy(isDigit) }) else {
            throw .malformedPortRange(text)
        }
        let lower = try Port.parse(String(parts[0]))
        let upper = try Port.parse(String(parts[1]))
        guard lower <= upper else { throw .reversedPortRange(text) }
        return try PortRange(lower: lower, upper: upper)
    }

    /// How many ports the range holds.
    public var count: Int { Int(upper) - Int(lower) + 1 }

    public var ports: ClosedRange<UInt16> { lower...upper }

    public func contains(_ port: UInt16) -> Bool { ports.contains(port) }

    public var description: String { "\(lower)-\(upper)" }
}
