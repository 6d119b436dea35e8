/// The lines TrafficMeter takes figures from, read by their exact format and nothing else. A
/// proxy's log also carries text from outside (stunnel writes the subject of a client certificate it
/// refuses, `Rejected by CERT at depth=0: CN=...`), so a line counts only if it is, from its first
/// byte to its last, one the proxy itself writes; a figure is at most 20 digits, none larger than
/// `maximumBytesPerConnection`; and sums saturate instead of trapping.
extension TrafficMeter {
    /// More than one connection carries in months at 100 Gbit/s (2^56 bytes, 64 PiB): a line that
    /// claims more is not the proxy's.
    static let maximumBytesPerConnection: UInt64 = 1 << 56

    /// `<bytes received>,<bytes sent>`: nginx's `log_format scistream_traffic $bytes_received,$bytes_sent`,
    /// the whole line.
    static func nginxLine(_ line: Substring, _ figures: inout TrafficFigures) {
        var scanner = LineScanner(line)
        guard let received = scanner.byteCount(), scanner.skip(","), let sent = scanner.byteCount(), scanner.atEnd else { return }
        figures.addConnection(bytesIn: received, bytesOut: sent)
    }

    /// Stunnel 5's own two lines (`debug = notice`), after its `YYYY.MM.DD HH:MM:SS LOG5[<n>]: `:
    /// `Service [l<i>] accepted connection from <address>` (a connection, counted when accepted), and
    /// `Connection <how>: A byte(s) sent to TLS, B byte(s) sent to socket` with `<how>` one of
    /// `closed`, `reset`, `reset/closed`, `closed/reset` (its bytes, counted when it ends).
    /// The producer side accepts TLS and sends plain to its targets: its bytes in are those "sent to
    /// socket"; the consumer side accepts plain and sends TLS: its bytes in are those "sent to TLS".
    static func stunnelLine(_ line: Substring, role: ProxyRole, _ figures: inout TrafficFigures) {
        var scanner = LineScanner(line)
        guard scanner.stunnelNotice() else { return }
        var accepted = scanner
        if accepted.skip("Service [l"), accepted.number() != nil, accepted.skip("] accepted connection from "), accepted.address() {
            figures.totalConnections = figures.totalConnections.addingSaturating(1)
            return
        }
        guard scanner.skip("Connection "),
              ["closed: ", "reset: ", "reset/closed: ", "closed/reset: "].contains(where: { scanner.skip($0) }),
              let toTLS = scanner.byteCount(), scanner.skip(" byte(s) sent to TLS, "),
              let toSocket = scanner.byteCount(), scanner.skip(" byte(s) sent to socket"), scanner.atEnd else { return }
        figures.addBytes(in: role == .prod ? toSocket : toTLS, out: role == .prod ? toTLS : toSocket)
    }

    /// One figure of HAProxy's `show stat`: a count, or empty (HAProxy leaves some fields blank).
    static func statField(_ field: Substring) -> UInt64? {
        var scanner = LineScanner(field)
        guard let value = scanner.number(), scanner.atEnd else { return nil }
        return value
    }
}

extension TrafficFigures {
    mutating func addBytes(in received: UInt64, out sent: UInt64) {
        bytesIn = bytesIn.addingSaturating(received)
        bytesOut = bytesOut.addingSaturating(sent)
    }

    mutating func addConnection(bytesIn received: UInt64, bytesOut sent: UInt64) {
        totalConnections = totalConnections.addingSaturating(1)
        addBytes(in: received, out: sent)
    }
}

extension FixedWidthInteger {
    /// `self + other`, or the largest value where that overflows (figures from outside never trap).
    func addingSaturating(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other < 0 ? .min : .max) : sum
    }
}

/// Reads a log line byte by byte, front to back: each step consumes what it matched, or nothing.
struct LineScanner {
    private let bytes: Substring.UTF8View
    private var index: Substring.UTF8View.Index

    init(_ line: Substring) {
        bytes = line.utf8
        index = bytes.startIndex
    }

    var atEnd: Bool { index == bytes.endIndex }

    /// Consumes `literal` if the line goes on with it.
    mutating func skip(_ literal: String) -> Bool {
        var position = index
        for byte in literal.utf8 {
            guard position < bytes.endIndex, bytes[position] == byte else { return false }
            position = bytes.index(after: position)
        }
        index = position
        return true
    }

    /// 1 to 20 ASCII digits (no sign, no space) that fit a UInt64.
    mutating func number() -> UInt64? {
        var position = index, value: UInt64 = 0, digits = 0
        while position < bytes.endIndex, case let byte = bytes[position], byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") {
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            digits += 1
            guard !overflow1, !overflow2, digits <= 20 else { return nil }
            value = sum
            position = bytes.index(after: position)
        }
        guard digits > 0 else { return nil }
        index = position
        return value
    }

    /// A number of bytes one connection can have moved (`TrafficMeter.maximumBytesPerConnection`).
    mutating func byteCount() -> UInt64? {
        var copy = self
        guard let value = copy.number(), value <= TrafficMeter.maximumBytesPerConnection else { return nil }
        self = copy
        return value
    }

    /// Exactly `count` ASCII digits.
    mutating func digits(_ count: Int) -> Bool {
        var copy = self
        for _ in 0..<count {
            guard copy.index < copy.bytes.endIndex, case let byte = copy.bytes[copy.index],
                  byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return false }
            copy.index = copy.bytes.index(after: copy.index)
        }
        self = copy
        return true
    }

    /// Stunnel's prefix of a notice: `YYYY.MM.DD HH:MM:SS LOG5[<n>]: `.
    mutating func stunnelNotice() -> Bool {
        var copy = self
        guard copy.digits(4), copy.skip("."), copy.digits(2), copy.skip("."), copy.digits(2), copy.skip(" "),
              copy.digits(2), copy.skip(":"), copy.digits(2), copy.skip(":"), copy.digits(2),
              copy.skip(" LOG5["), copy.number() != nil, copy.skip("]: ") else { return false }
        self = copy
        return true
    }

    /// The rest of the line is a peer address as stunnel prints it (`127.0.0.1:36864`, `::1:36864`):
    /// hex digits, `.`, `:`, `[`, `]`, `%` and a scope name, at most 64 bytes.
    mutating func address() -> Bool {
        let rest = bytes[index...]
        guard !rest.isEmpty, rest.count <= 64, rest.allSatisfy({ byte in
            (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || ".:[]%_-".utf8.contains(byte)
        }) else { return false }
        index = bytes.endIndex
        return true
    }
}
