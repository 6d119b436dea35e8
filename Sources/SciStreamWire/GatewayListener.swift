/// A session listener as an s2cs reports it and as the other gateway's s2cs receives it:
/// `host:port` when the hop between gateways is TLS (the default), `tcp://host:port` when that s2cs
/// forwards plain TCP (`--data-plane-tls=False`). The scheme is how a consumer-side s2cs finds out,
/// at setup time, that the two gateways were not started the same way.
public struct GatewayListener: Equatable, Hashable, Sendable, CustomStringConvertible {
    public static let plaintextScheme = "tcp://"

    public let endpoint: Endpoint
    public let plaintext: Bool

    public init(_ endpoint: Endpoint, plaintext: Bool) {
        self.endpoint = endpoint
        self.plaintext = plaintext
    }

    public var description: String { plaintext ? GatewayListener.plaintextScheme + endpoint.description : endpoint.description }

    /// `host:port` or `tcp://host:port`; the address must pass `Endpoint.parse`.
    public static func parse(_ text: String) throws(ValidationError) -> GatewayListener {
        if text.hasPrefix(plaintextScheme) {
            return GatewayListener(try Endpoint.parse(String(text.dropFirst(plaintextScheme.count))), plaintext: true)
        }
        return GatewayListener(try Endpoint.parse(text), plaintext: false)
    }

    /// A comma-separated list as given on the s2uc command line (`parseListenerList`'s rules, each
    /// entry optionally `tcp://`).
    public static func parseList(_ text: String) throws(ValidationError) -> [GatewayListener] {
        var listeners: [GatewayListener] = []
        for entry in try splitListenerList(text) {
            listeners.append(try parse(String(entry)))
        }
        return listeners
    }
}
