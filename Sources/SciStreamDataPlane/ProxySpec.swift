/// Which side of the tunnel a proxy serves.
///
/// Stands in for `SciStreamWire.Role` until that module lands; the integrator maps one to the other.
public enum ProxyRole: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The producer-side gateway (inbound request): accepts TLS from the peer gateway, forwards
    /// plain TCP to the producer application.
    case prod
    /// The consumer-side gateway (outbound request): accepts plain TCP from the consumer
    /// application, connects with TLS to the producer-side gateway's listeners.
    case cons

    public var description: String {
        switch self {
        case .prod: "PROD"
        case .cons: "CONS"
        }
    }
}

/// A TCP endpoint: a host (name, IPv4, or IPv6 with or without brackets) and a port.
///
/// Stands in for `SciStreamWire.Endpoint` until that module lands (same shape: "host:port",
/// IPv6 as "[::1]:5100").
public struct ProxyEndpoint: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String {
        if host.contains(":") && !host.hasPrefix("[") { return "[\(host)]:\(port)" }
        return "\(host):\(port)"
    }
}

/// What one session's proxy must do. Listener i forwards to target `i % targets.count`.
public struct ProxySpec: Sendable, Equatable {
    /// The session id (a UUID). It is the session's secret: never logged in full.
    public var uid: String
    public var role: ProxyRole
    /// The addresses the proxy binds.
    public var listeners: [ProxyEndpoint]
    /// Where it forwards: the producer application (PROD) or the producer-side listeners (CONS).
    public var targets: [ProxyEndpoint]
    /// Per-connection rate limit in kb/s (1 kb = 1000 bits); 0 means unlimited. Only nginx applies it.
    public var rateKbps: Int

    public init(uid: String, role: ProxyRole, listeners: [ProxyEndpoint], targets: [ProxyEndpoint], rateKbps: Int) {
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
