import SciStreamWire
import SciStreamDataPlane

extension ControlServer {
    /// Each session's age, and its traffic as its proxy counts it (TrafficMeter), for `list` and `/metrics`.
    /// The figures of the sessions whose details `caller` may see (see `sessionInfos(of:exits:for:)`); a nil
    /// caller is the operator (the metrics page): every session, one entry per entry of `listing`,
    /// in its order. `only`: that session's alone (its last figures, at its release).
    func sessionTraffic(of listing: SessionListing, for caller: Caller?, only uid: SessionID? = nil) async -> [SessionTraffic] {
        let selected = caller == nil && uid == nil ? Array(listing.entries.indices) : listing.entries.indices.filter { index in
            let entry = listing.entries[index]
            return (uid.map { entry.uid == $0 } ?? true) && (caller.map { entry.visible(to: $0) } ?? true)
        }
        let now = ContinuousClock.now
        var counted: [TrafficFigures?] = []
        if dataPlane.type != .mock, !selected.isEmpty, dataPlane.countsTraffic {
            // All at once (one socket dump, only the logs that grew); one session's at its release: read now.
            counted = await traffic.figures(for: metered(listing, selected), type: dataPlane.type, folder: dataPlane.folder, fresh: uid != nil)
        }
        var result: [SessionTraffic] = []
        result.reserveCapacity(selected.count)
        for (position, index) in selected.enumerated() {
            let entry = listing.entries[index]
            let age = now - entry.created
            var traffic = SessionTraffic(uid: entry.info.uid, ageSeconds: UInt32(clamping: age.components.seconds), counting: .none)
            if position < counted.count, let figures = counted[position] {
                traffic.counting = figures.counting
                traffic.openConnections = UInt32(clamping: figures.openConnections)
                traffic.totalConnections = UInt64(clamping: figures.totalConnections)
                traffic.bytesIn = figures.bytesIn
                traffic.bytesOut = figures.bytesOut
            }
            result.append(traffic)
        }
        // The meter forgets the sessions that are gone, once per change of the registry.
        if uid == nil, views.trafficKept.withLock({ kept in defer { kept = listing.generation }; return kept != listing.generation }) {
            await traffic.keep(only: listing.uids)
        }
        return result
    }
}

extension ControlServer {
    /// The entries of `listing` at `indices` as TrafficMeter asks for them, each with its log mark:
    /// which proxies run, and how far each one's log is written, one question for all.
    func metered(_ listing: SessionListing, _ indices: [Int]) -> [MeteredSession] {
        indices.map { index in
            let entry = listing.entries[index]
            var session = entry.metered
            session.logMark = entry.proxy?.logMark
            return session
        }
    }

    /// While `run()` runs, once a second: the HAProxy stats sockets of a few idle sessions whose
    /// figures are older than `TrafficMeter.maxStatsAge` are asked again (`TrafficMeter.refreshStale`),
    /// here and not in a request, which reads only what changed.
    func refreshTrafficInBackground() async {
        guard dataPlane.type == .haproxy else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            guard !Task.isCancelled, dataPlane.countsTraffic else { continue }
            let listing = await registry.listing()
            let active = listing.entries.indices.filter { listing.entries[$0].active }
            guard !active.isEmpty else { continue }
            await traffic.refreshStale(metered(listing, active), type: .haproxy, folder: dataPlane.folder)
        }
    }
}

extension SessionListing.Entry {
    /// Whether `caller` may see this session's details (`SessionRegistry.mayInspect`).
    func visible(to caller: Caller) -> Bool {
        SessionRegistry.mayInspect(owner: owner, client: client, caller)
    }
}
