/// Which side of the tunnel a session sets up: the producer-side (inbound) or consumer-side (outbound) proxy.
public enum Role: UInt8, Sendable, CustomStringConvertible {
    case prod = 1
    case cons = 2

    public var description: String {
        switch self {
        case .prod: return "PROD"
        case .cons: return "CONS"
        }
    }
}

/// In a file s2cs writes (a session record), a role is its name, "PROD" or "CONS".
extension Role: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let name = try container.decode(String.self)
        guard let role = [Role.prod, .cons].first(where: { $0.description == name }) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a role: \(name)")
        }
        self = role
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension ByteReader {
    mutating func readRole(_ field: String) throws(WireError) -> Role {
        let byte = try readU8(field)
        guard let role = Role(rawValue: byte) else { throw .invalidRole(byte) }
        return role
    }
}

extension ByteWriter {
    mutating func writeRole(_ role: Role) {
        writeU8(role.rawValue)
    }
}
