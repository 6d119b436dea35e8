import Foundation
import SciStreamWire
import SciStreamSystem

// Interim data plane: Mock works; the proxy types answer "not implemented yet" on update.
// Replaced by the real data plane (HAProxy, Nginx, Stunnel) when it lands.

public enum DataServerType: Sendable, Equatable {
    case haproxy, nginx, stunnel, mock

    public static func parse(_ text: String) -> DataServerType? {
        switch text.lowercased() {
        case "haproxy", "haproxysubprocess": .haproxy
        case "nginx": .nginx
        case "stunnel", "stunnelsubprocess": .stunnel
        case "mock": .mock
        default: nil
        }
    }

    public var name: String {
        switch self {
        case .haproxy: "Haproxy"
        case .nginx: "Nginx"
        case .stunnel: "Stunnel"
        case .mock: "Mock"
        }
    }
}

public struct ProxySpec: Sendable {
    public let uid: String
    public let role: Role
    public let listeners: [Endpoint]
    public let targets: [Endpoint]
    public let rateKbps: Int
    public init(uid: String, role: Role, listeners: [Endpoint], targets: [Endpoint], rateKbps: Int) {
        self.uid = uid
        self.role = role
        self.listeners = listeners
        self.targets = targets
        self.rateKbps = rateKbps
    }
}

public enum ProxyStatus: Sendable, Equatable {
    case running(pid: Int32)
    case exited(description: String)
}

public struct DataPlaneError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

public actor DataPlane {
    public let type: DataServerType
    public init(type: DataServerType, folder: String, dataPlaneTLS: Bool, logger: Logger, stopGrace: Duration = .seconds(2)) throws(DataPlaneError) {
        self.type = type
    }

    public static func defaultFolder() -> String {
        if let path = ProcessInfo.processInfo.environment["HAPROXY_CONFIG_PATH"], !path.isEmpty { return path }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".scistream").path
    }

    public func reapStale() async -> Int { 0 }

    public func start(_ spec: ProxySpec) async throws(DataPlaneError) {
        guard type == .mock else {
            throw DataPlaneError(description: "the \(type.name) data server is not implemented yet in this build: start s2cs with --type Mock")
        }
    }

    public func stop(uid: String) async {}
    public func status(uid: String) -> ProxyStatus? { nil }
    public func stopAll() async {}
}
