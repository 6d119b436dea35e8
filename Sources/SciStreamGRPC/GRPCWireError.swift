/// An HTTP/2 error code (RFC 9113, section 7): what GOAWAY and RST_STREAM carry.
public enum HTTP2ErrorCode: UInt32, Sendable, CustomStringConvertible {
    case noError = 0x0
    case protocolError = 0x1
    case internalError = 0x2
    case flowControlError = 0x3
    case settingsTimeout = 0x4
    case streamClosed = 0x5
    case frameSizeError = 0x6
    case refusedStream = 0x7
    case cancel = 0x8
    case compressionError = 0x9
    case connectError = 0xa
    case enhanceYourCalm = 0xb
    case inadequateSecurity = 0xc
    case http11Required = 0xd

    public var description: String {
        switch self {
        case .noError: "NO_ERROR"
        case .protocolError: "PROTOCOL_ERROR"
        case .internalError: "INTERNAL_ERROR"
        case .flowControlError: "FLOW_CONTROL_ERROR"
        case .settingsTimeout: "SETTINGS_TIMEOUT"
        case .streamClosed: "STREAM_CLOSED"
        case .frameSizeError: "FRAME_SIZE_ERROR"
        case .refusedStream: "REFUSED_STREAM"
        case .cancel: "CANCEL"
        case .compressionError: "COMPRESSION_ERROR"
        case .connectError: "CONNECT_ERROR"
        case .enhanceYourCalm: "ENHANCE_YOUR_CALM"
        case .inadequateSecurity: "INADEQUATE_SECURITY"
        case .http11Required: "HTTP_1_1_REQUIRED"
        }
    }
}

/// Why bytes from a gRPC peer were refused: the module's one error type.
public enum GRPCWireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The connection cannot go on: the server sends GOAWAY with this code and closes it.
    case connection(HTTP2ErrorCode, String)
    /// A protobuf message or a gRPC message frame that does not decode: that call fails, the
    /// connection goes on.
    case message(String)

    public var description: String {
        switch self {
        case .connection(let code, let reason): "HTTP/2 \(code): \(reason)"
        case .message(let reason): reason
        }
    }

    static func compression(_ reason: String) -> GRPCWireError { .connection(.compressionError, reason) }
    static func protocolError(_ reason: String) -> GRPCWireError { .connection(.protocolError, reason) }
}
