/// The proxy that carries a session's bytes (S2DS).
public enum DataServerType: Sendable, Equatable, Hashable, CaseIterable, CustomStringConvertible {
    case haproxy, nginx, stunnel, mock

    /// Parses `--type` values, case-insensitively: `Haproxy`, `Nginx`, `Stunnel`, `Mock`, and the
    /// original's aliases `HaproxySubprocess`, `StunnelSubprocess`.
    public static func parse(_ text: String) -> DataServerType? {
        switch text.lowercased() {
        case "haproxy", "haproxysubprocess": .haproxy
        case "nginx": .nginx
        case "stunnel", "stunnelsubprocess": .stunnel
        case "mock": .mock
        default: nil
        }
    }

    /// The name as `--type` spells it: "Haproxy", "Nginx", "Stunnel", "Mock".
    public var name: String {
        switch self {
        case .haproxy: "Haproxy"
        case .nginx: "Nginx"
        case .stunnel: "Stunnel"
        case .mock: "Mock"
        }
    }

    public var description: String { name }

    /// The program that runs (nil for Mock).
    public var binary: String? {
        switch self {
        case .haproxy: "haproxy"
        case .nginx: "nginx"
        case .stunnel: "stunnel"
        case .mock: nil
        }
    }

    /// The Debian packages that provide it: nginx needs its dynamic stream module too.
    public var debianPackages: [String] {
        switch self {
        case .haproxy: ["haproxy"]
        case .nginx: ["nginx", "libnginx-mod-stream"]
        case .stunnel: ["stunnel4"]
        case .mock: []
        }
    }

    /// Whether the proxy can forward plain TCP (`--data-plane-tls=False`): stunnel cannot.
    public var supportsPlaintext: Bool { self != .stunnel }

    /// Whether the proxy can limit each connection's rate: only nginx (`proxy_upload_rate`...).
    public var supportsRateLimit: Bool { self == .nginx }

    /// Why this proxy cannot forward a UDP session (`s2uc --protocol udp`), or nil if it can: the one
    /// UDP rule, which the control server checks at the request and the data plane again at the start.
    /// UDP needs a plaintext hop between the gateways (none of HAProxy, Nginx and Stunnel speaks DTLS,
    /// so there is no encrypted UDP hop), and only Nginx forwards UDP at all (Mock stands in for it).
    public func udpRefusal(plaintext: Bool) -> UDPRefusal? {
        guard plaintext else { return .encryptedHop }
        guard self == .nginx || self == .mock else { return .notNginx }
        return nil
    }
}

/// Why a proxy cannot forward UDP (`DataServerType.udpRefusal(plaintext:)`).
public enum UDPRefusal: Sendable, Equatable {
    /// The hop between the gateways is encrypted, and UDP cannot be.
    case encryptedHop
    /// The proxy is not Nginx.
    case notNginx
}
