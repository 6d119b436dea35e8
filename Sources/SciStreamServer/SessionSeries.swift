import Synchronization
import SciStreamWire
import SciStreamMetrics

/// The per-session series of the metrics page (`s2cs_session_bytes_total`,
/// `s2cs_session_connections`, `s2cs_session_connections_total`): each session's lines are kept
/// with the figures they show and made again only when those figures change, so that a scrape of
/// 1,000 idle sessions joins kept text instead of formatting 5,000 samples. Kept per listing
/// (`SessionListing.generation`): a change of the registry makes every line again once.
final class SessionSeries: Sendable {
    typealias Page = SessionSeriesPage

    fileprivate struct Lines {
        /// The figures shown (age left out: the page does not show it).
        let figures: SessionTraffic
        let bytes: String
        let connections: String
        let connectionsTotal: String
    }

    private struct Kept {
        var generation: UInt64 = 0
        /// One per entry of that listing.
        var lines: [Lines?] = []
        /// The last page's three families, joined: the next page when no figure changed.
        var joined: Page? = nil
    }

    private let kept = Mutex(Kept())

    /// The series of `traffic`, which is `sessionTraffic(of: listing, for: nil)`: one entry per
    /// entry of `listing`, in its order.
    func page(listing: SessionListing, traffic: [SessionTraffic]) -> Page {
        kept.withLock { kept in
            var page = Page()
            if kept.generation != listing.generation || kept.lines.count != traffic.count || traffic.count != listing.entries.count {
                kept = Kept(generation: listing.generation, lines: [Lines?](repeating: nil, count: traffic.count))
                page.running = Set(traffic.map(\.uid))
            }
            // Nothing changed since the last page (the common case of a scrape): the same text.
            if page.running == nil, let joined = kept.joined, traffic.indices.allSatisfy({ index in
                var entry = traffic[index]
                entry.ageSeconds = 0
                return kept.lines[index]?.figures == entry || (kept.lines[index] == nil && entry.counting == .none)
            }) {
                return joined
            }
            for (index, var entry) in traffic.enumerated() {
                entry.ageSeconds = 0
                if let lines = kept.lines[index], lines.figures == entry {
                    page.append(lines)
                    continue
                }
                page.changed.append(entry)
                guard entry.counting != .none, index < listing.entries.count else {
                    kept.lines[index] = nil
                    continue
                }
                let lines = Self.lines(entry, role: "\(listing.entries[index].role)")
                kept.lines[index] = lines
                page.append(lines)
            }
            kept.joined = Page(bytes: page.bytes, connections: page.connections, connectionsTotal: page.connectionsTotal)
            return page
        }
    }

    private static func lines(_ entry: SessionTraffic, role: String) -> Lines {
        var bytes = PrometheusText(), connections = PrometheusText(), total = PrometheusText()
        bytes.sample("s2cs_session_bytes_total", ["session": entry.uid, "role": role, "direction": "in"], Double(entry.bytesIn))
        bytes.sample("s2cs_session_bytes_total", ["session": entry.uid, "role": role, "direction": "out"], Double(entry.bytesOut))
        connections.sample("s2cs_session_connections", ["session": entry.uid, "role": role], Double(entry.openConnections))
        total.sample("s2cs_session_connections_total", ["session": entry.uid, "role": role], Double(entry.totalConnections))
        return Lines(figures: entry, bytes: bytes.text, connections: connections.text, connectionsTotal: total.text)
    }
}

extension SessionSeries.Page {
    fileprivate mutating func append(_ lines: SessionSeries.Lines) {
        bytes += lines.bytes
        connections += lines.connections
        connectionsTotal += lines.connectionsTotal
    }
}

/// What `list` and the metrics page keep between requests, beside the registry's listing.
final class ListingViews: Sendable {
    /// The listing generation whose sessions TrafficMeter was last told to keep.
    let trafficKept = Mutex<UInt64>(0)
    let series = SessionSeries()
}
