import SciStreamWire

extension DataPlane {
    /// Whether the proxy must forward UDP too. UDP goes only through Nginx (`listen ... udp`) and only
    /// over a plaintext hop (`DataServerType.udpRefusal`, the rule the control server checks first, in
    /// SessionRegistry+UDP.swift); this is the data plane's own check of it.
    static func checkUDP(_ spec: ProxySpec, type: DataServerType, tls: Bool) throws(DataPlaneError) -> Bool {
        guard spec.udp else { return false }
        let name = spec.uid.prefix
        switch type.udpRefusal(plaintext: !tls) {
        case nil: return true
        case .encryptedHop: throw .invalidSpec(session: name, reason: "UDP cannot be encrypted between the gateways (no DTLS in the proxies)")
        case .notNginx: throw .invalidSpec(session: name, reason: "\(type.name) cannot forward UDP: only Nginx can")
        }
    }
}
