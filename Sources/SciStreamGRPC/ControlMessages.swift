/// The messages of the original SciStream's gRPC service `scistream.Control` (scistream-proto
/// 1.2.1, `src/proto/scistream.proto`), by field number:
///
/// | message | fields |
/// |---|---|
/// | Request | 1 uid string, 2 role string, 3 num_conn int32, 4 rate int32 |
/// | UpdateTargets | 1 uid string, 2 remote_listeners repeated string, 3 role string |
/// | Release | 1 uid string |
/// | Hello | 1 uid string, 2 prod_listeners repeated string, 3 role string |
/// | Response | 1 listeners repeated string, 2 prod_listeners repeated string |
/// | AppResponse | 1 message string, 2 listeners repeated string |
///
/// Service `Control`: `req(Request) -> Response`, `update(UpdateTargets) -> Response`,
/// `release(Release) -> Response`, `hello(Hello) -> AppResponse`, all unary.
public enum ControlProto {
    /// The path of a method of `scistream.Control` (`/scistream.Control/req`).
    public static func path(_ method: String) -> String { "/scistream.Control/\(method)" }

    public struct Request: Equatable, Sendable {
        public var uid: String, role: String, numConn: Int32, rate: Int32
        public init(uid: String, role: String, numConn: Int32, rate: Int32) {
            (self.uid, self.role, self.numConn, self.rate) = (uid, role, numConn, rate)
        }
        public init(decoding bytes: [UInt8]) throws(GRPCWireError) {
            let fields = try ProtobufFields(bytes)
            self.init(uid: try fields.string(1, "Request.uid"), role: try fields.string(2, "Request.role"),
                      numConn: try fields.int32(3, "Request.num_conn"), rate: try fields.int32(4, "Request.rate"))
        }
        public var encoded: [UInt8] {
            var writer = ProtobufWriter()
            writer.string(1, uid); writer.string(2, role); writer.int32(3, numConn); writer.int32(4, rate)
            return writer.bytes
        }
    }

    public struct UpdateTargets: Equatable, Sendable {
        public var uid: String, remoteListeners: [String], role: String
        public init(uid: String, remoteListeners: [String], role: String) {
            (self.uid, self.remoteListeners, self.role) = (uid, remoteListeners, role)
        }
        public init(decoding bytes: [UInt8]) throws(GRPCWireError) {
            let fields = try ProtobufFields(bytes)
            self.init(uid: try fields.string(1, "UpdateTargets.uid"), remoteListeners: try fields.strings(2, "UpdateTargets.remote_listeners"),
                      role: try fields.string(3, "UpdateTargets.role"))
        }
        public var encoded: [UInt8] {
            var writer = ProtobufWriter()
            writer.string(1, uid); writer.strings(2, remoteListeners); writer.string(3, role)
            return writer.bytes
        }
    }

    public struct Release: Equatable, Sendable {
        public var uid: String
        public init(uid: String) { self.uid = uid }
        public init(decoding bytes: [UInt8]) throws(GRPCWireError) {
            self.init(uid: try ProtobufFields(bytes).string(1, "Release.uid"))
        }
        public var encoded: [UInt8] {
            var writer = ProtobufWriter()
            writer.string(1, uid)
            return writer.bytes
        }
    }

    public struct Hello: Equatable, Sendable {
        public var uid: String, prodListeners: [String], role: String
        public init(uid: String, prodListeners: [String], role: String) {
            (self.uid, self.prodListeners, self.role) = (uid, prodListeners, role)
        }
        public init(decoding bytes: [UInt8]) throws(GRPCWireError) {
            let fields = try ProtobufFields(bytes)
            self.init(uid: try fields.string(1, "Hello.uid"), prodListeners: try fields.strings(2, "Hello.prod_listeners"),
                      role: try fields.string(3, "Hello.role"))
        }
        public var encoded: [UInt8] {
            var writer = ProtobufWriter()
            writer.string(1, uid); writer.strings(2, prodListeners); writer.string(3, role)
            return writer.bytes
        }
    }

    public struct Response: Equatable, Sendable {
        public var listeners: [String], prodListeners: [String]
        public init(listeners: [String], prodListeners: [String]) {
            (self.listeners, self.prodListeners) = (listeners, prodListeners)
        }
        public init(decoding bytes: [UInt8]) throws(GRPCWireError) {
            let fields = try ProtobufFields(bytes)
            self.init(listeners: try fields.strings(1, "Response.listeners"), prodListeners: try fields.strings(2, "Response.prod_listeners"))
        }
        public var encoded: [UInt8] {
            var writer = ProtobufWriter()
            writer.strings(1, listeners); writer.strings(2, prodListeners)
            return writer.bytes
        }
    }

    public struct AppResponse: Equatable, Sendable {
        public var message: String, listeners: [String]
        public init(message: String, listeners: [String]) {
            (self.message, self.listeners) = (message, listeners)
        }
        public init(decoding bytes: [UInt8]) throws(GRPCWireError) {
            let fields = try ProtobufFields(bytes)
            self.init(message: try fields.string(1, "AppResponse.message"), listeners: try fields.strings(2, "AppResponse.listeners"))
        }
        public var encoded: [UInt8] {
            var writer = ProtobufWriter()
            writer.string(1, message); writer.strings(2, listeners)
            return writer.bytes
        }
    }
}
