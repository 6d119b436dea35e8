import Foundation

/// The TCP segments of a classic pcap file (what `tcpdump -w` writes) on an Ethernet link.
struct PacketCapture {
    struct Segment {
        var source: String
        var destination: String
        var sourcePort: UInt16
        var destinationPort: UInt16
        var payload: ArraySlice<UInt8>
    }

    var segments: [Segment] = []
    /// Packets that were not IPv4/TCP (ARP, IPv6 neighbour discovery...).
    var otherPackets = 0

    struct FormatError: Error, CustomStringConvertible {
        let description: String
    }

    init(contentsOf url: URL) throws {
        let bytes = [UInt8](try Data(contentsOf: url))
        guard bytes.count >= 24 else { throw FormatError(description: "\(url.path): \(bytes.count) bytes, shorter than a pcap header") }
        let magic = Array(bytes[0..<4])
        let littleEndian: Bool
        switch magic {
        case [0xd4, 0xc3, 0xb2, 0xa1], [0x4d, 0x3c, 0xb2, 0xa1]: littleEndian = true
        case [0xa1, 0xb2, 0xc3, 0xd4], [0xa1, 0xb2, 0x3c, 0x4d]: littleEndian = false
        default: throw FormatError(description: "\(url.path): not a pcap file (magic \(magic))")
        }
        func u32(_ offset: Int) -> Int {
            let b = bytes[offset..<offset + 4].map(Int.init)
            return littleEndian ? b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24 : b[3] | b[2] << 8 | b[1] << 16 | b[0] << 24
        }
        guard u32(20) == 1 else { throw FormatError(description: "\(url.path): link type \(u32(20)), not Ethernet") }
        var offset = 24
        while offset + 16 <= bytes.count {
            let captured = u32(offset + 8)
            let start = offset + 16
            guard start + captured <= bytes.count else { break }  // a last record cut short by the stop
            let packet = bytes[start..<start + captured]
            offset = start + captured
            if let segment = Self.tcpSegment(packet) { segments.append(segment) } else { otherPackets += 1 }
        }
    }

    static func tcpSegment(_ packet: ArraySlice<UInt8>) -> Segment? {
        let p = Array(packet)
        guard p.count >= 14 + 20, p[12] == 0x08, p[13] == 0x00 else { return nil }  // IPv4
        let ip = 14
        let ipHeader = Int(p[ip] & 0x0f) * 4
        let totalLength = Int(p[ip + 2]) << 8 | Int(p[ip + 3])
        guard p[ip] >> 4 == 4, p[ip + 9] == 6, ipHeader >= 20, p.count >= ip + ipHeader + 20 else { return nil }  // TCP
        let tcp = ip + ipHeader
        let tcpHeader = Int(p[tcp + 12] >> 4) * 4
        let end = min(p.count, ip + totalLength)
        guard tcp + tcpHeader <= end else { return nil }
        func address(_ at: Int) -> String { p[at..<at + 4].map(String.init).joined(separator: ".") }
        return Segment(source: address(ip + 12), destination: address(ip + 16),
                       sourcePort: UInt16(p[tcp]) << 8 | UInt16(p[tcp + 1]),
                       destinationPort: UInt16(p[tcp + 2]) << 8 | UInt16(p[tcp + 3]),
                       payload: ArraySlice(p[(tcp + tcpHeader)..<end]))
    }

    /// TCP payload bytes carried between these two addresses (either way).
    func payloadBytes(between a: String, and b: String) -> Int {
        segments.filter { Set([$0.source, $0.destination]) == Set([a, b]) }.reduce(0) { $0 + $1.payload.count }
    }

    /// Whether `pattern` occurs inside any one TCP payload.
    func payloadsContain(_ pattern: [UInt8]) -> Bool {
        segments.contains { $0.payload.count >= pattern.count && Array($0.payload).containsSequence(pattern) }
    }
}

extension Array where Element == UInt8 {
    func containsSequence(_ pattern: [UInt8]) -> Bool {
        guard !pattern.isEmpty, count >= pattern.count else { return pattern.isEmpty }
        let first = pattern[0]
        var index = 0
        while index <= count - pattern.count {
            if self[index] == first && self[index..<index + pattern.count].elementsEqual(pattern) { return true }
            index += 1
        }
        return false
    }
}
