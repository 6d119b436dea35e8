import SciStreamWire
import SciStreamDataPlane

extension ControlServer {
    /// Each session's age, and its traffic as its proxy counts it (TrafficMeter), for `list` and `/metrics`.
    /// The figures of the sessions whose details `caller` may see (see `sessionInfos(for:)`); a nil
    /// caller is the operator (the metrics page): every session.
    /// `all` is a `registry.snapshot()`.
    func sessionTraffic(of all: [SessionRegistry.Session], for caller: Caller?, only uid: SessionID? = nil) async -> [SessionTraffic] {
        let sessions = all.filter { session in (uid.map { session.uid == $0 } ?? true) && (caller.map { registry.mayInspect(session, $0) } ?? true) }
        let now = ContinuousClock.now
        // All at once (one socket dump, only the logs that grew); one session's at its release: read now.
        let counted = await traffic.figures(for: sessions.map { MeteredSession(uid: $0.uid.text, role: $0.role, listenerPorts: $0.listeners.map(\.port),
                                                                               logMark: $0.proxy?.logMark) },
                                            dataPlane: dataPlane, fresh: uid != nil)
        var result: [SessionTraffic] = []
        result.reserveCapacity(sessions.count)
        for session in sessions {
            let age = now - session.created
            var entry = SessionTraffic(uid: session.uid.prefix, ageSeconds: UInt32(clamping: age.components.seconds), counting: .none)
            if let figures = counted[session.uid.text] {
                entry.counting = figures.counting
                entry.openConnections = UInt32(clamping: figures.openConnections)
                entry.totalConnections = UInt64(clamping: figures.totalConnections)
                entry.bytesIn = figures.bytesIn
                entry.bytesOut = figures.bytesOut
            }
            result.append(entry)
        }
        if uid == nil { await traffic.keep(only: Set(all.map(\.uid.text))) }
        return result
    }
}
