import SciStreamWire
import SciStreamDataPlane

/// What `list` and `/metrics` show of every session, made once per change of the registry: each
/// session's entry is rendered here (uid prefix, state, reported listeners, targets), and a request
/// that finds the registry unchanged takes the same listing without copying or formatting a session
/// again. Any change to `SessionRegistry.sessions` drops it (the property's `didSet`), so a listing
/// never shows a state older than the registry's.
/// A proxy's unexpected exit is a change of its session (`Session.proxyExit`): the listing made
/// after it shows the session failed. What depends on the caller (which sessions and details it may
/// see, an operator's owner notes) and on the moment (traffic, age) is added per request
/// (ControlServer+Handlers, ControlServer+Traffic).
struct SessionListing: Sendable {
    /// A class: a request walks a thousand of them, and copying a reference is one retain where
    /// copying a struct of these fields is one per field.
    final class Entry: Sendable {
        let uid: SessionID
        let role: Role
        let client: String
        let owner: String?
        let ownerName: String?
        let created: ContinuousClock.Instant
        /// Active in the registry (its proxy started), even if that proxy has exited since.
        let active: Bool
        /// Its proxy's handle, whose log mark TrafficMeter compares (nil: none started).
        let proxy: RunningProxy?
        /// As the session's owner sees it: its targets, and for a failed session why.
        let info: SessionInfo
        /// The session as TrafficMeter asks for it (no log mark yet: that is read per request).
        let metered: MeteredSession

        init(uid: SessionID, role: Role, client: String, owner: String?, ownerName: String?, created: ContinuousClock.Instant,
             active: Bool, proxy: RunningProxy?, info: SessionInfo, metered: MeteredSession) {
            (self.uid, self.role, self.client, self.owner, self.ownerName) = (uid, role, client, owner, ownerName)
            (self.created, self.active, self.proxy, self.info, self.metered) = (created, active, proxy, info, metered)
        }
    }

    /// Which listing this is: a new number whenever the registry changed in between.
    let generation: UInt64
    /// Sorted by uid.
    let entries: [Entry]
    /// Every session's id (what TrafficMeter keeps figures of).
    let uids: Set<SessionID>
    /// How many sessions are in each state (as `SessionInfo.state` names it: an active session whose
    /// proxy exited is failed) and role.
    let held: [String: [Role: Int]]
    /// Proxies that exited without being stopped, since s2cs started (`SessionRegistry.unexpectedExits`),
    /// counted with the sessions they failed: the two always agree.
    let unexpectedExits: Int
}

extension SessionRegistry {
    /// The listing of the sessions held now (see `SessionListing`): the one made last when nothing
    /// changed since.
    func listing() -> SessionListing {
        if let cachedListing, cachedListing.unexpectedExits == unexpectedExits { return cachedListing }
        listingsMade &+= 1
        let uids = sessions.keys.sorted { $0.text < $1.text }
        var entries: [SessionListing.Entry] = []
        entries.reserveCapacity(uids.count)
        for uid in uids {
            guard let session = sessions[uid] else { continue }
            var state: String
            var note = ""
            switch session.state {
            case .pending: state = "pending"
            case .ready: state = "ready"
            case .starting: state = "starting"
            case .active: state = "active"
            case .failed(let reason): state = "failed"; note = reason
            case .releasing: state = "releasing"
            }
            if session.state == .active, let description = session.proxyExit {
                state = "failed"
                note = "proxy exited unexpectedly (\(description))"
            }
            // Only a prefix of the uid: the whole uid is the session secret.
            let info = SessionInfo(uid: uid.prefix, role: session.role, state: state,
                                   listeners: reported(session.listeners, role: session.role),
                                   targets: session.targets.map(\.description), note: note)
            entries.append(SessionListing.Entry(uid: uid, role: session.role, client: session.client, owner: session.owner,
                                                ownerName: session.ownerName, created: session.created,
                                                active: session.state == .active, proxy: session.proxy, info: info,
                                                metered: MeteredSession(uid: uid, role: session.role,
                                                                        listenerPorts: session.listeners.map(\.port))))
        }
        var held: [String: [Role: Int]] = [:]
        for entry in entries { held[entry.info.state, default: [:]][entry.role, default: 0] += 1 }
        let made = SessionListing(generation: listingsMade, entries: entries, uids: Set(uids), held: held,
                                  unexpectedExits: unexpectedExits)
        cachedListing = made
        return made
    }
}
