/// What one session may ask for and hold, the same for s2uc (which checks its arguments), s2cs
/// (which checks requests) and the proxies (whose configs carry them).
public enum SessionLimits {
    /// The most listeners one session may ask for (`--num_conn`).
    public static let maxConnectionsPerSession = 100
    /// A producer-side listener closes a connection whose TLS handshake has not finished by then
    /// (HAProxy `timeout client`, which 2.6 applies to the handshake, nginx `ssl_handshake_timeout`,
    /// stunnel `TIMEOUTbusy`). A handshake between gateways takes milliseconds, even across a WAN.
    public static let handshakeSeconds = 10
    /// Connections one session's proxy holds at once, over all its listeners (default).
    public static let defaultMaxConnections = 512
}
