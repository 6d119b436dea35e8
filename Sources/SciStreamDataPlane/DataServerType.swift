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
}
