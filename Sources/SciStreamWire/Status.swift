/// A reply's status code, numbered and named as gRPC's.
public enum StatusCode: UInt8, Sendable, CustomStringConvertible {
    case ok = 0
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case unimplemented = 12
    case internalError = 13
    case unavailable = 14
    case unauthenticated = 16

    /// The gRPC name, e.g. `INVALID_ARGUMENT`.
    public var description: String {
        switch self {
        case .ok: return "OK"
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .deadlineExceeded: return "DEADLINE_EXCEEDED"
        case .notFound: return "NOT_FOUND"
        case .alreadyExists: return "ALREADY_EXISTS"
        case .permissionDenied: return "PERMISSION_DENIED"
        case .resourceExhausted: return "RESOURCE_EXHAUSTED"
        case .unimplemented: return "UNIMPLEMENTED"
        case .internalError: return "INTERNAL"
        case .unavailable: return "UNAVAILABLE"
        case .unauthenticated: return "UNAUTHENTICATED"
        }
    }
}

/// A reply's outcome: a code and a message for a person.
public struct Status: Equatable, Sendable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String

    public init(_ code: StatusCode, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public static let ok = Status(.ok)

    public var isOK: Bool { code == .ok }

    /// `INVALID_ARGUMENT: <message>`, or just the code name when there is no message.
    public var description: String { message.isEmpty ? code.description : "\(code): \(message)" }
}

extension Status: WireCodable {
    init(from reader: inout ByteReader) throws(WireError) {
        let byte = try reader.readU8("Status.code")
        guard let code = StatusCode(rawValue: byte) else { throw .invalidStatus(byte) }
        self.init(code, try reader.readString("Status.message"))
    }

    func encode(to writer: inout ByteWriter) {
        writer.writeU8(code.rawValue)
        writer.writeString(message, "Status.message")
    }
}
