import SciStreamWire
import SciStreamDataPlane

extension SessionRegistry {
    /// A UDP session (`s2uc --protocol udp`) needs Nginx and a plaintext hop between the gateways:
    /// none of HAProxy, Nginx and Stunnel speaks DTLS, so UDP cannot be encrypted there, and only
    /// Nginx forwards UDP at all. Anything else is refused before a port is reserved, saying what to do.
    static func checkUDP(_ request: Request, type: DataServerType, plaintext: Bool) throws(StatusError) {
        guard request.udp else { return }
        switch type.udpRefusal(plaintext: plaintext) {
        case nil: return
        case .encryptedHop:
            throw StatusError(.invalidArgument,
                "this s2cs encrypts the hop between gateways (TLS), and UDP cannot be encrypted there: none of HAProxy, Nginx and Stunnel speaks DTLS. "
                + "Either carry the data over TCP (drop --protocol udp), or, on a trusted network or inside a VPN or IPsec tunnel between the gateways, "
                + "use gateways whose s2cs run with --type Nginx --data-plane-tls=False")
        case .notNginx:
            throw StatusError(.invalidArgument,
                "this s2cs runs \(type.name), which cannot forward UDP: only Nginx can; use gateways whose s2cs run with --type Nginx --data-plane-tls=False, or drop --protocol udp")
        }
    }
}
