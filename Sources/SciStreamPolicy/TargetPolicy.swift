import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire
import SciStreamSystem

/// Where this s2cs lets a session forward: the gateway's operator decides, not whoever asks.
///
/// With `--allowed-targets`, a target must fall in one of its blocks (and port ranges). Without it,
/// everything is allowed except what no remote user should reach through a gateway: loopback (unless
/// this s2cs itself serves loopback listeners, as in single-host demos), link-local addresses (cloud
/// metadata services live there), the other cloud metadata and platform addresses (AWS IMDS over
/// IPv6, Alibaba's, Azure's), the carrier-grade NAT block 100.64.0.0/10 (a cloud provider's internal
/// network), the Kubernetes API service when s2cs runs in a pod (`KUBERNETES_SERVICE_HOST`), and the
/// gateway's own addresses. Unspecified, multicast and broadcast addresses, and this s2cs's own
/// control and metrics ports on any address of this host, are refused in every case. IPv4-mapped,
/// IPv4-compatible and NAT64 (`64:ff9b::/96`) IPv6 forms are judged as the IPv4 address they reach. The
/// decision is made on the numeric address a name resolves to (so `0x64.0x64.0x64.0xc8` and
/// `1684300999` are judged as the 100.100.100.200 the resolver makes of them), and that numeric address
/// is what the proxy config gets: a later DNS answer cannot change it.
package struct TargetPolicy: Sendable {
    /// `--allowed-targets`; nil: the default policy above.
    package let allowed: [AddressRule]?
    /// This s2cs's listeners are on loopback (`--listener-ip 127.0.0.1`): loopback targets are the
    /// single-host demo's applications, not a way into the gateway.
    package let allowLoopback: Bool
    /// The gateway's own addresses; read again for every decision when nil (interfaces change).
    package let ownAddresses: (@Sendable () -> Set<IPAddress>)?

    package static let flag = "--allowed-targets"

    /// The Kubernetes API service's address (`KUBERNETES_SERVICE_HOST` of the pod s2cs runs in), if any.
    /// The service network's block cannot be learned from inside a pod: only this address is refused.
    package let kubernetesAPI: IPAddress?
    /// This s2cs's own services (the control port, the metrics port): never a target on an address of
    /// this host, whatever `--allowed-targets` says. Filled in once they are bound (`--port 0`).
    package var servicePorts: Set<UInt16> = []
    /// `--advertise-ip` when numeric: an address that reaches this gateway from outside (a NAT's).
    package var advertised: IPAddress? = nil

    package init(allowed: [AddressRule]?, allowLoopback: Bool, kubernetesAPI: IPAddress? = nil,
         ownAddresses: (@Sendable () -> Set<IPAddress>)? = nil) {
        self.allowed = allowed
        self.allowLoopback = allowLoopback
        self.kubernetesAPI = kubernetesAPI
        self.ownAddresses = ownAddresses
    }

    private static let never: [(AddressRule, String)] = [
        (rule("0.0.0.0/8"), "an unspecified address"),
        (rule("::/128"), "the unspecified address"),
        (rule("224.0.0.0/4"), "a multicast address"),
        (rule("ff00::/8"), "a multicast address"),
        (rule("240.0.0.0/4"), "a reserved or broadcast address"),
    ]
    private static let loopback: [AddressRule] = [rule("127.0.0.0/8"), rule("::1/128")]
    private static let linkLocal: [AddressRule] = [rule("169.254.0.0/16"), rule("fe80::/10")]
    /// Refused by the default policy: cloud metadata and platform services outside link-local space,
    /// and the carrier-grade NAT block that cloud providers use internally.
    private static let cloudPlatform: [(AddressRule, String)] = [
        (rule("fd00:ec2::254/128"), "the AWS instance metadata service (IPv6)"),
        (rule("100.100.100.200/32"), "the Alibaba Cloud metadata service"),
        (rule("168.63.129.16/32"), "the Azure platform service (WireServer)"),
        (rule("100.64.0.0/10"), "in the carrier-grade NAT block 100.64.0.0/10"),
    ]

    package static func isLoopback(_ address: IPAddress) -> Bool {
        loopback.contains { $0.contains(address.canonical) }
    }

    package static func rule(_ text: String) -> AddressRule {
        // safe: the literals above are valid rules (checked by TargetPolicyTests)
        try! AddressRule.parse(text)
    }

    /// Why `address:port` may not be a target, or nil when it may. The reason is for the server log.
    package func refusal(_ address: IPAddress, port: UInt16) -> String? {
        let judged = address.canonical
        if let reached = judged.nat64IPv4, let reason = refusal(reached, port: port) {
            return "\(judged) reaches \(reached) through NAT64: \(reason)"
        }
        for (rule, what) in Self.never where rule.contains(judged) {
            return "\(judged) is \(what)"
        }
        if servicePorts.contains(port) && isThisHost(judged, address) {
            return "\(judged) port \(port) is this s2cs's own control or metrics port"
        }
        if let allowed {
            guard allowed.contains(where: { $0.contains(judged, port: port) || $0.contains(address, port: port) }) else {
                return "\(judged) port \(port) is not in \(Self.flag)"
            }
            return nil
        }
        if Self.loopback.contains(where: { $0.contains(judged) }) {
            return allowLoopback ? nil : "\(judged) is a loopback address and this s2cs's listeners are not on loopback (allow it with \(Self.flag))"
        }
        if Self.linkLocal.contains(where: { $0.contains(judged) }) {
            return "\(judged) is a link-local address (allow it with \(Self.flag))"
        }
        for (rule, what) in Self.cloudPlatform where rule.contains(judged) {
            return "\(judged) is \(what) (allow it with \(Self.flag))"
        }
        if let kubernetesAPI, kubernetesAPI.canonical == judged {
            return "\(judged) is the Kubernetes API service (KUBERNETES_SERVICE_HOST; allow it with \(Self.flag))"
        }
        let own = (ownAddresses ?? Self.interfaceAddresses)()
        if own.contains(judged) || own.contains(address) {
            return "\(judged) is an address of this gateway (allow it with \(Self.flag))"
        }
        return nil
    }

    /// Whether a connection to `judged` (the canonical form of `address`) reaches this host.
    private func isThisHost(_ judged: IPAddress, _ address: IPAddress) -> Bool {
        if Self.isLoopback(judged) || judged == advertised?.canonical { return true }
        let own = (ownAddresses ?? Self.interfaceAddresses)()
        return own.contains(judged) || own.contains(address)
    }

    /// The addresses of this host's interfaces (getifaddrs), each in its canonical form.
    @Sendable static func interfaceAddresses() -> Set<IPAddress> {
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var found: Set<IPAddress> = []
        var cursor = list
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let raw = entry.pointee.ifa_addr else { continue }
            switch Int32(raw.pointee.sa_family) {
            case AF_INET:
                let bytes = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                    withUnsafeBytes(of: pointer.pointee.sin_addr) { Array($0) }
                }
                if let address = IPAddress(bytes: bytes) { found.insert(address) }
            case AF_INET6:
                let bytes = raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    withUnsafeBytes(of: pointer.pointee.sin6_addr) { Array($0) }
                }
                if let address = IPAddress(bytes: bytes) { found.insert(address.canonical) }
            default:
                continue
            }
        }
        return found
    }
}

/// Resolves target names off the cooperative pool (getaddrinfo may block for seconds on DNS).
package enum TargetResolver {
    /// The numeric address `host` stands for: itself when numeric, else getaddrinfo's first answer.
    package static func resolve(_ host: String) async -> Result<IPAddress, ResolveFailure> {
        if let numeric = IPAddress(numeric: host) { return .success(numeric) }
        return await BlockingWork.run {
            do throws(ResolveError) {
                let first = try SocketAddress.resolve(host: host, port: 0)
                guard let address = IPAddress(bytes: first.addressBytes) else { return .failure(ResolveFailure(host: host, reason: "not an IP address")) }
                return .success(address)
            } catch {
                return .failure(ResolveFailure(host: host, reason: error.reason))
            }
        }
    }
}

package struct ResolveFailure: Error, CustomStringConvertible {
    package let host: String
    package let reason: String
    package var description: String { "cannot resolve '\(host)': \(reason)" }
}
