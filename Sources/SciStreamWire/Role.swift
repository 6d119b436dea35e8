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
