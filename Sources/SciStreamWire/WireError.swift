/// Why a control frame could not be decoded (or, from `Message.checkedEncoded`, encoded).
///
/// The description is a line an operator can read after `Error: `; it names no command-line option
/// (s2cs and s2uc add theirs: SciStreamCommandLine's `ErrorWording`).
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The length prefix announced more bytes than the decoder accepts. The stream cannot be resynchronised.
    case frameTooLarge(Int)
    /// The frame's version byte is not `WireConstants.version`.
    case unsupportedVersion(UInt8)
    /// The frame's kind byte names no message.
    case unknownKind(UInt8)
    /// The frame ended inside the named field.
    case truncated(String)
    /// The named string field is not valid UTF-8.
    case invalidUTF8(String)
    /// A role byte other than 1 (PROD) or 2 (CONS).
    case invalidRole(UInt8)
    /// A status code byte this protocol does not define.
    case invalidStatus(UInt8)
    /// The named list field holds more than `WireConstants.maxListCount` items.
    case tooManyItems(String, Int)
    /// Bytes left over inside a frame after its last field (or after the frame, for `Message(decoding:)`).
    case trailingBytes(Int)
    /// A length prefix of 0: a frame carries at least a version and a kind byte.
    case emptyFrame
    /// The stream ended with this many bytes of an unfinished frame buffered (`FrameDecoder.finish()`).
    case incompleteFrame(Int)
    /// The named string field holds more than `WireConstants.maxStringLength` UTF-8 bytes (encoding only).
    case stringTooLong(String, Int)
    /// The uid of a message of kind `kind` is not a session id. The frame was whole: the server answers
    /// it with that kind's reply (INVALID_ARGUMENT, the text below) and reads on.
    case invalidSessionID(kind: UInt8, text: String)

    public var description: String {
        switch self {
        case .frameTooLarge(let length):
            return "a control frame announced \(length) bytes, more than the frame size limit: "
                + "the peer does not speak the SciStream control protocol "
                + "(is TLS on at one end only?)"
        case .unsupportedVersion(let version):
            return "control protocol version \(version) is not supported (this build speaks version "
                + "\(WireConstants.version)): use s2uc and s2cs from the same release"
        case .unknownKind(let kind):
            return "unknown control message kind \(hex(kind)): use s2uc and s2cs from the same release"
        case .truncated(let field):
            return "the control frame ends inside field \(field): the message is truncated"
        case .invalidUTF8(let field):
            return "field \(field) of the control frame is not valid UTF-8"
        case .invalidRole(let role):
            return "role \(role) is not valid: expected 1 (PROD) or 2 (CONS)"
        case .invalidStatus(let code):
            return "status code \(code) is not defined by the control protocol"
        case .tooManyItems(let field, let count):
            return "field \(field) lists \(count) items, more than the limit of \(WireConstants.maxListCount)"
        case .trailingBytes(let count):
            return "\(count) unexpected byte\(count == 1 ? "" : "s") after the last field of the control frame"
        case .emptyFrame:
            return "empty control frame (length 0): a frame carries at least a version and a kind byte"
        case .incompleteFrame(let count):
            return "the connection ended in the middle of a control frame (\(count) byte\(count == 1 ? "" : "s") "
                + "of it received)"
        case .stringTooLong(let field, let count):
            return "field \(field) is \(count) bytes long, more than the limit of \(WireConstants.maxStringLength)"
        case .invalidSessionID(_, let text):
            return ValidationError.invalidSessionID(text).description
        }
    }

    /// The status a server answers with (in an `error` frame) when it cannot decode a request.
    public var status: Status { Status(.invalidArgument, description) }
}

/// `0x0A`-style text for a byte.
func hex(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return "0x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0x0F)])
}
