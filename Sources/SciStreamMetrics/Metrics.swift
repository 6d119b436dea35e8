import Foundation
import Synchronization
import SciStreamWire
import SciStreamSystem
import SciStreamCommandLine

/// What `s2cs --metrics` counts, and its rendering in the Prometheus text format (version 0.0.4;
/// docs/metrics.md). The control server tells it each request it received and each reply it sent;
/// the session figures are read from the registry when scraped.
package final class Metrics: Sendable {
    /// Upper bounds of the setup-duration histogram, in seconds.
    static let durationBounds: [Double] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

    private struct Counters {
        var requests: [Role: Int] = [:]
        var setups: [Role: Int] = [:]
        /// By step (`request`, `hello`, `update`, `release`, `list`) and status name.
        var failures: [String: [String: Int]] = [:]
        var releases = 0
        var durationBuckets = [Int](repeating: 0, count: Metrics.durationBounds.count)
        var durationSum = 0.0
        var durationCount = 0
        /// Token checks by result (`valid`, `missing`, `invalid`, `unavailable`, `identity_refused`).
        var auth: [String: Int] = [:]
        /// Bytes of sessions that have ended, and the figures last seen of those that run (by uid
        /// prefix): the gateway-wide totals survive session ends.
        var retiredBytes: (in: UInt64, out: UInt64) = (0, 0)
        var lastSeen: [String: (in: UInt64, out: UInt64)] = [:]
    }

    /// The steps and statuses whose failure counters are shown from 0 (a rate over a series that
    /// appears only with its first failure misses that failure).
    static let failureSteps = ["request", "hello", "update", "release", "list"]
    static let commonFailures: [StatusCode] = [.invalidArgument, .notFound, .permissionDenied, .resourceExhausted, .unauthenticated, .unavailable, .internalError]
    static let authResults = ["valid", "missing", "invalid", "unavailable", "identity_refused"]
    /// When this process started, seconds since the epoch.
    package let startTime = Date().timeIntervalSince1970

    package init() {}

    private let counters = Mutex(Counters())

    /// A token check's result (one of `authResults`).
    package func authenticated(_ result: String) {
        counters.withLock { $0.auth[result, default: 0] += 1 }
    }

    /// Sessions' traffic as read now: the figures of each running session, kept for the totals.
    package func observe(_ traffic: [SessionTraffic]) {
        counters.withLock { counters in
            for entry in traffic where entry.counting != .none {
                let last = counters.lastSeen[entry.uid] ?? (0, 0)
                counters.lastSeen[entry.uid] = (max(last.in, entry.bytesIn), max(last.out, entry.bytesOut))
            }
        }
    }

    /// The gateway-wide byte totals after observing `changed` (the figures that differ from the last
    /// scrape's). `running`, when the sessions changed since (nil: the same sessions): a session seen
    /// before and gone now has ended, and its last figures move to the retired total.
    private func totals(changed: [SessionTraffic], running: Set<String>?) -> (in: UInt64, out: UInt64) {
        observe(changed)
        return counters.withLock { counters in
            if let running {
                for (uid, bytes) in counters.lastSeen where !running.contains(uid) {
                    counters.retiredBytes = (counters.retiredBytes.in &+ bytes.in, counters.retiredBytes.out &+ bytes.out)
                    counters.lastSeen[uid] = nil
                }
            }
            return counters.lastSeen.values.reduce(counters.retiredBytes) { ($0.in &+ $1.in, $0.out &+ $1.out) }
        }
    }

    /// A request arrived (counted before it is handled: a request waits for its hello).
    package func received(_ message: Message) {
        guard case .request(let request) = message else { return }
        counters.withLock { $0.requests[request.role, default: 0] += 1 }
    }

    /// A reply was sent for `message`, which took `elapsed` to handle.
    package func answered(_ message: Message, with reply: Message, elapsed: Duration) {
        let step: String
        let status: Status
        switch reply {
        case .requestReply(let answer): (step, status) = ("request", answer.status)
        case .helloReply(let answer): (step, status) = ("hello", answer)
        case .updateReply(let answer): (step, status) = ("update", answer.status)
        case .releaseReply(let answer): (step, status) = ("release", answer)
        case .listReply(let answer): (step, status) = ("list", answer.status)
        case .error(let answer): (step, status) = ("frame", answer)
        case .request, .hello, .update, .release, .list: return
        }
        counters.withLock { counters in
            guard status.isOK else {
                counters.failures[step, default: [:]][status.code.description, default: 0] += 1
                return
            }
            switch message {
            case .update(let update):
                counters.setups[update.role, default: 0] += 1
                let seconds = elapsed.inSeconds
                for (index, bound) in Self.durationBounds.enumerated() where seconds <= bound {
                    counters.durationBuckets[index] += 1
                }
                counters.durationSum += seconds
                counters.durationCount += 1
            case .release:
                counters.releases += 1
            default:
                break
            }
        }
    }

    /// The exposition text: these counters, the sessions by state (`held`: by state name and role),
    /// role and type, the proxies that exited without being asked to, and the per-session series
    /// (`series`).
    package func render(held: [String: [Role: Int]], series: SessionSeriesPage, type: String, unexpectedExits: Int, draining: Bool,
                ports: (size: Int, held: Int), certificateNotAfter: Double?) -> String {
        let bytes = totals(changed: series.changed, running: series.running)
        let counters = self.counters.withLock { $0 }
        var text = PrometheusText()
        text.family("process_start_time_seconds", "gauge", "Start time of the s2cs process since the Unix epoch, in seconds.")
        text.sample("process_start_time_seconds", [:], startTime.rounded(.down))
        text.family("s2cs_bytes_total", "counter", "Bytes through every session's proxy since s2cs started, ended sessions included: in = towards the targets, out = the way back.")
        text.sample("s2cs_bytes_total", ["direction": "in"], Double(bytes.in))
        text.sample("s2cs_bytes_total", ["direction": "out"], Double(bytes.out))
        text.family("s2cs_port_pool_ports", "gauge", "Ports of --port-range: size, and held by sessions now.")
        text.sample("s2cs_port_pool_ports", ["state": "size"], Double(ports.size))
        text.sample("s2cs_port_pool_ports", ["state": "held"], Double(ports.held))
        if let certificateNotAfter {
            text.family("s2cs_certificate_expiry_timestamp_seconds", "gauge", "When the control channel's certificate (as served now) expires, seconds since the Unix epoch.")
            text.sample("s2cs_certificate_expiry_timestamp_seconds", [:], certificateNotAfter)
        }
        text.family("s2cs_auth_checks_total", "counter", "Token checks of requests, by result (with authentication on).")
        for result in Self.authResults {
            text.sample("s2cs_auth_checks_total", ["result": result], Double(counters.auth[result, default: 0]))
        }
        text.family("s2cs_info", "gauge", "This s2cs: its version and data server type.")
        text.sample("s2cs_info", ["version": SciStreamVersion.string, "type": type], 1)
        text.family("s2cs_draining", "gauge", "1 while this s2cs drains (SIGUSR1): new sessions are refused, existing ones go on.")
        text.sample("s2cs_draining", [:], draining ? 1 : 0)

        text.family("s2cs_sessions", "gauge", "Sessions held now, by state, role and data server type.")
        for state in Self.states {
            for role in [Role.prod, .cons] {
                text.sample("s2cs_sessions", ["state": state, "role": "\(role)", "type": type], Double(held[state]?[role] ?? 0))
            }
        }

        text.family("s2cs_requests_total", "counter", "Session requests received, by role.")
        for role in [Role.prod, .cons] {
            text.sample("s2cs_requests_total", ["role": "\(role)"], Double(counters.requests[role, default: 0]))
        }
        text.family("s2cs_setups_total", "counter", "Sessions set up (their update answered OK: the proxy listens), by role.")
        for role in [Role.prod, .cons] {
            text.sample("s2cs_setups_total", ["role": "\(role)"], Double(counters.setups[role, default: 0]))
        }
        text.family("s2cs_failures_total", "counter", "Requests answered with an error, by step (request, hello, update, release, list; frame: a message that is not a request) and status.")
        var failures = counters.failures
        for step in Self.failureSteps {
            for code in Self.commonFailures { failures[step, default: [:]][code.description, default: 0] += 0 }
        }
        for (step, byStatus) in failures.sorted(by: { $0.key < $1.key }) {
            for (status, count) in byStatus.sorted(by: { $0.key < $1.key }) {
                text.sample("s2cs_failures_total", ["step": step, "status": status], Double(count))
            }
        }
        text.family("s2cs_releases_total", "counter", "Sessions released on request.")
        text.sample("s2cs_releases_total", [:], Double(counters.releases))

        text.family("s2cs_setup_duration_seconds", "histogram", "Time from a session's update (its last step) to its proxy's listeners accepting.")
        // Each bucket counts every duration up to its bound (they are cumulative, as the format wants).
        for (index, bound) in Self.durationBounds.enumerated() {
            text.sample("s2cs_setup_duration_seconds_bucket", ["le": PrometheusText.number(bound)], Double(counters.durationBuckets[index]))
        }
        text.sample("s2cs_setup_duration_seconds_bucket", ["le": "+Inf"], Double(counters.durationCount))
        text.sample("s2cs_setup_duration_seconds_sum", [:], counters.durationSum)
        text.sample("s2cs_setup_duration_seconds_count", [:], Double(counters.durationCount))

        text.family("s2cs_proxy_unexpected_exits_total", "counter", "Session proxies that exited without being asked to (not by release, expiry or shutdown).")
        text.sample("s2cs_proxy_unexpected_exits_total", [:], Double(unexpectedExits))

        // Per session (uid prefix), as its proxy counts it: only sessions whose traffic is counted.
        text.family("s2cs_session_bytes_total", "counter", "Bytes through a session's proxy: in = received on its listeners and forwarded to its targets, out = the way back (closed connections only for Nginx and Stunnel).")
        text.append(series.bytes)
        text.family("s2cs_session_connections", "gauge", "Connections open now on a session's listeners.")
        text.append(series.connections)
        text.family("s2cs_session_connections_total", "counter", "Connections a session's listeners accepted since its proxy started.")
        text.append(series.connectionsTotal)
        return text.text
    }

    /// The session states `s2cs_sessions` shows, each with every role (0 when none).
    static let states = ["pending", "ready", "starting", "active", "failed", "releasing"]
}


/// The per-session series of one scrape, as the server keeps them between scrapes (each session's
/// lines made again only when its figures change), and what `Metrics` needs for its totals.
package struct SessionSeriesPage: Sendable {
    package var bytes = ""
    package var connections = ""
    package var connectionsTotal = ""
    /// The figures that differ from the last scrape's (all of them after a change of the registry).
    package var changed: [SessionTraffic] = []
    /// Every session's uid prefix when the sessions changed since the last scrape; nil: the same.
    package var running: Set<String>? = nil

    package init(bytes: String = "", connections: String = "", connectionsTotal: String = "") {
        (self.bytes, self.connections, self.connectionsTotal) = (bytes, connections, connectionsTotal)
    }
}
