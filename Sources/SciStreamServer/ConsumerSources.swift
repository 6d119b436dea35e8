import SciStreamDataPlane
import SciStreamPolicy

/// Who may connect to a consumer-side (CONS) listener: the consumer application's side of the
/// tunnel, which holds the session key and forwards whatever it receives to the producer application.
///
/// `--cons-allowed-sources` names the blocks; without it, a session's CONS listeners accept this
/// host's loopback addresses `127.0.0.1` and `::1` (a consumer application on the gateway itself)
/// and the address of the client that sent the outbound request (the consumer host, as s2uc runs
/// there). Every other source is closed by the proxy before a byte is forwarded.
struct ConsumerSources: Sendable {
    /// `--cons-allowed-sources`; nil: loopback and each session's requester.
    let configured: [AddressRule]?
    /// False when the data plane cannot limit sources (Stunnel without CAP_NET_ADMIN): without
    /// `configured` the listeners then accept any source, as s2cs says at start (with it, s2cs does
    /// not start, and a reload does not take it).
    var fenceable = true

    static let flag = "--cons-allowed-sources"
    /// The loopback addresses a local application connects from (`localhost`), not all of 127.0.0.0/8:
    /// another loopback address is another local service's, and need not be the consumer's.
    static let loopback = [TargetPolicy.rule("127.0.0.1/32"), TargetPolicy.rule("::1/128")]

    /// The blocks a session requested from `requester` (the client's address as the control server saw it) accepts.
    func blocks(requester: String) -> [SourceBlock] {
        guard configured != nil || fenceable else { return [] }
        if let configured { return configured.map(\.sourceBlock) }
        var rules = Self.loopback
        if let address = IPAddress(numeric: requester)?.canonical {
            let rule = AddressRule(network: address, prefix: address.bytes.count * 8)
            if !rules.contains(where: { $0.contains(address) }) { rules.append(rule) }
        }
        return rules.map(\.sourceBlock)
    }

    /// Who may connect, for the start-up log.
    var summary: String {
        configured.map { $0.map(\.description).joined(separator: ",") }
            ?? "\(Self.loopback.map(\.description).joined(separator: ",")) and the address that requested each session"
    }
}

extension AddressRule {
    /// The rule's block as a proxy config's source restriction (its ports, if any, are not part of it).
    var sourceBlock: SourceBlock {
        SourceBlock(address: network.bytes, prefix: prefix)!  // safe: an AddressRule's address is 4 or 16 bytes and its prefix fits it (parse checks)
    }
}
