/// A complete unary gRPC request: the stream it came on, its method path, its metadata and its one
/// message (the protobuf bytes, without gRPC's 5-byte prefix).
public struct GRPCCall: Equatable, Sendable {
    public let streamID: UInt32
    public let path: String
    public let metadata: [HeaderField]
    public let message: [UInt8]

    public init(streamID: UInt32, path: String, metadata: [HeaderField], message: [UInt8]) {
        self.streamID = streamID
        self.path = path
        self.metadata = metadata
        self.message = message
    }

    /// The first value of metadata `name` (lowercase).
    public func metadata(_ name: String) -> String? { metadata.first { $0.name == name }?.value }
}

/// What a unary call answers: one message and status OK, or a status without a message.
public enum GRPCResponse: Equatable, Sendable {
    case message([UInt8])
    /// A gRPC status code (1...16) and a message for a person.
    case failure(code: Int, message: String)
}

/// gRPC's status codes (the numbers are the protocol's).
public enum GRPCStatus {
    public static let ok = 0
    public static let invalidArgument = 3
    public static let notFound = 5
    public static let resourceExhausted = 8
    public static let unimplemented = 12
    public static let internalError = 13
    public static let unavailable = 14

    /// `grpc-message`'s encoding: percent-encoding of every byte outside printable ASCII and of '%'.
    public static func percentEncoded(_ text: String) -> String {
        var output = ""
        for byte in text.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                output.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                output += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return output
    }

    /// Decodes `grpc-message` (clients and tests); a malformed escape stays as it is.
    public static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        let input = Array(text.utf8)
        var index = 0
        while index < input.count {
            if input[index] == UInt8(ascii: "%"), index + 2 < input.count,
               let value = UInt8(String(decoding: input[index + 1...index + 2], as: UTF8.self), radix: 16) {
                bytes.append(value)
                index += 3
            } else {
                bytes.append(input[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A unary message with gRPC's prefix: compressed flag 0, 4-byte big-endian length.
    public static func framed(_ message: [UInt8]) -> [UInt8] {
        [0] + UInt32BE.bytes(UInt32(message.count)) + message
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: Swift.max(0, width - count)) + self
    }
}
