import SciStreamWire

extension DataPlane {
    /// Whether the proxy must forward UDP too. UDP goes only through Nginx (`listen ... udp`) and only
    /// over a plaintext hop: none of HAProxy, Nginx and Stunnel speaks DTLS, so there is no encrypted
    /// UDP hop to offer. The control server refuses such requests first (SessionRegistry+UDP.swift);
    /// this is the data plane's own check.
    static func checkUDP(_ spec: ProxySpec, type: DataServerType, tls: Bool) throws(DataPlaneError) -> Bool {
        guard spec.udp else { return false }
        let name = SessionID(spec.uid)?.prefix ?? "?"
        guard type == .nginx || type == .mock else {
            throw .invalidSpec(session: name, reason: "\(type.name) cannot forward UDP: only Nginx can")
        }
        guard !tls else {
            throw .invalidSpec(session: name, reason: "UDP cannot be encrypted between the gateways (no DTLS in the proxies)")
        }
        return true
    }
}
