import SciStreamWire

/// Which side of the tunnel a proxy serves: PROD (producer-side gateway: accepts TLS from the peer
/// gateway, forwards plain TCP to the producer application) or CONS (consumer-side gateway: accepts
/// plain TCP from the consumer application, connects with TLS to the producer-side listeners).
public typealias ProxyRole = Role

/// A TCP endpoint, "host:port" (IPv6 as "[::1]:5100").
public typealias ProxyEndpoint = Endpoint

/// What one session's proxy must do. Listener i forwards to target `i % targets.count`.
public struct ProxySpec: Sendable, Equatable {
    /// The session id, validated where it came in (the wire). It is the session's secret: never
    /// logged in full.
    public var uid: SessionID
    public var role: ProxyRole
    /// The addresses the proxy binds.
    public var listeners: [ProxyEndpoint]
    /// Where it forwards: the producer application (PROD) or the producer-side listeners (CONS).
    public var targets: [ProxyEndpoint]
    /// Per-connection rate limit in kb/s (1 kb = 1000 bits); 0 means unlimited. Only nginx applies it.
    public var rateKbps: Int
    /// Forward UDP as well as TCP on every listener (Nginx with a plaintext hop only).
    public var udp = false
    /// When not empty, the only sources the listeners accept: on a producer-side proxy the peer
    /// gateways (plaintext mode), on a consumer-side one the consumer applications' addresses
    /// (`--cons-allowed-sources`, or loopback and the requester). Empty: any source.
    public var allowedSources: [SourceBlock]

    public init(uid: SessionID, role: ProxyRole, listeners: [ProxyEndpoint], targets: [ProxyEndpoint], rateKbps: Int, allowedSources: [SourceBlock] = []) {
        self.allowedSources = allowedSources
        self.uid = uid
        self.role = role
        self.listeners = listeners
        self.targets = targets
        self.rateKbps = rateKbps
    }
}

/// The state of a session's proxy.
public enum ProxyStatus: Sendable, Equatable {
    /// Started and listening; `pid` is the proxy's main process.
    case running(pid: Int32)
    /// It died on its own (noticed by the supervisor): how, e.g. "exited with code 1".
    case exited(description: String)
}
