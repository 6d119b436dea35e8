import Synchronization
import SciStreamSystem
import SciStreamPolicy

/// The control connections open now, against `--max-connections` and `--max-connections-per-client`.
///
/// When every slot is taken, a new connection makes room rather than being refused: silent
/// connections from a few addresses, each within its own cap, must not keep everyone else out.
/// A connection is *unproven* until its first complete request frame (so, with TLS, until its
/// handshake is done); an address is *known* once a request from it passed authentication (any
/// request, with authentication off). Under pressure the newcomer takes the slot of, in this order:
/// 1. the oldest unproven connection of another address that is not known;
/// 2. the oldest unproven connection of another address (one that made itself known, then went
///    silent). Never the newcomer's own address's: it may be its client's request on its way;
/// 3. for a newcomer from a known address, while known addresses hold fewer than `knownShare`
///    slots, the oldest connection of an address that is not known.
/// Otherwise it is refused (RESOURCE_EXHAUSTED naming the flag). A known address's connection that
/// has sent a request is never dropped to make room. The dropped connection is shut down; its own
/// task closes it.
package final class ConnectionTable: Sendable {
    package enum Admission {
        /// Admitted; `dropped` names the address whose connection was shut down to make room.
        case admitted(id: UInt64, dropped: String?)
        case refusedForClient
        case refusedFull
    }

    private struct Entry {
        let client: String
        let socket: Socket
        var proven = false
    }

    private struct State {
        var entries: [UInt64: Entry] = [:]
        var byClient: [String: Int] = [:]
        var nextID: UInt64 = 0
        /// Addresses served before, with the order they were last seen in (oldest forgotten first).
        var known: [String: UInt64] = [:]
        var knownClock: UInt64 = 0
    }

    let maxConnections: Int
    let maxPerClient: Int
    /// The slots that addresses served before keep under pressure: a quarter, at least one.
    var knownShare: Int { max(1, maxConnections / 4) }
    /// How many addresses are remembered as served before.
    static let maxKnownClients = 4096

    private let state = Mutex(State())

    /// Whether a newcomer may take the slot of its own address's connection (the metrics listener:
    /// one request per connection, so none of them waits on another).
    let dropsOwnAddress: Bool

    package init(maxConnections: Int, maxPerClient: Int, dropsOwnAddress: Bool = false) {
        self.maxConnections = maxConnections
        self.maxPerClient = maxPerClient
        self.dropsOwnAddress = dropsOwnAddress
    }

    package var count: Int { state.withLock { $0.entries.count } }

    /// Admits a connection from `address` (counted by `IPAddress.clientKey`: an IPv6 client by its /64).
    package func admit(_ socket: Socket, client address: String) -> Admission {
        let client = IPAddress.clientKey(address)
        let (admission, victim) = state.withLock { state -> (Admission, Entry?) in
            guard state.byClient[client, default: 0] < maxPerClient else { return (.refusedForClient, nil) }
            var dropped: Entry? = nil
            if state.entries.count >= maxConnections {
                guard let victim = Self.victim(in: state, for: client, knownShare: knownShare, dropsOwnAddress: dropsOwnAddress),
                      let entry = Self.remove(victim, from: &state) else { return (.refusedFull, nil) }
                dropped = entry
            }
            state.nextID &+= 1
            state.entries[state.nextID] = Entry(client: client, socket: socket)
            state.byClient[client, default: 0] += 1
            return (.admitted(id: state.nextID, dropped: dropped?.client), dropped)
        }
        victim?.socket.shutdown()
        return admission
    }

    /// The connection a newcomer from `client` may take the slot of (ids grow with age: the smallest is the oldest).
    private static func victim(in state: State, for client: String, knownShare: Int, dropsOwnAddress: Bool) -> UInt64? {
        let newcomerKnown = state.known[client] != nil
        var unprovenStranger: UInt64? = nil, unprovenOther: UInt64? = nil, stranger: UInt64? = nil
        var knownHeld = 0
        for (id, entry) in state.entries {
            // Never the newcomer's own address's connection in handshake: it may be its client's
            // request, still on its way.
            let unproven = !entry.proven && (dropsOwnAddress || entry.client != client)
            if unproven { unprovenOther = min(id, unprovenOther ?? id) }
            guard state.known[entry.client] == nil else {
                knownHeld += 1
                continue
            }
            if unproven { unprovenStranger = min(id, unprovenStranger ?? id) }
            stranger = min(id, stranger ?? id)
        }
        return unprovenStranger ?? unprovenOther ?? (newcomerKnown && knownHeld < knownShare ? stranger : nil)
    }

    private static func remove(_ id: UInt64, from state: inout State) -> Entry? {
        guard let entry = state.entries.removeValue(forKey: id) else { return nil }
        let left = state.byClient[entry.client, default: 1] - 1
        state.byClient[entry.client] = left > 0 ? left : nil
        return entry
    }

    /// The connection's first complete request frame has arrived.
    package func proven(_ id: UInt64) {
        state.withLock { $0.entries[id]?.proven = true }
    }

    /// `client` sent a request that passed authentication (any request, with authentication off).
    package func served(_ address: String) {
        let client = IPAddress.clientKey(address)
        state.withLock { state in
            state.knownClock &+= 1
            state.known[client] = state.knownClock
            if state.known.count > Self.maxKnownClients, let oldest = state.known.min(by: { $0.value < $1.value })?.key {
                state.known[oldest] = nil
            }
        }
    }

    /// The connection ended (a no-op for one dropped to make room). Returns how many are left.
    @discardableResult
    package func remove(_ id: UInt64) -> Int {
        state.withLock { state in
            _ = Self.remove(id, from: &state)
            return state.entries.count
        }
    }
}
