import SciStreamMetrics

extension ControlServer {
    /// A page of the metrics listener: `/metrics`, `/healthz` (alive: the registry answers) or
    /// `/readyz` (ready for new sessions: accepting, not draining, the proxy runnable), 503 when not.
    func metricsPage(_ path: String) async -> MetricsPage {
        switch path {
        case "/healthz":
            return await isHealthy() ? MetricsPage(body: "ok\n") : MetricsPage(status: "503 Service Unavailable", body: "unhealthy: the session registry did not answer within 2 s\n")
        case "/readyz":
            if let reason = await notReadyReason() { return MetricsPage(status: "503 Service Unavailable", body: "not ready: \(reason)\n") }
            return MetricsPage(body: "ready\n")
        default:
            return MetricsPage(contentType: MetricsPage.prometheusType, body: await metricsText())
        }
    }

    /// The `/metrics` page of this s2cs.
    func metricsText() async -> String {
        // The sessions and the exit count at one instant: a proxy's unexpected exit is counted when
        // its session is marked failed (`SessionRegistry.proxyExited`), so the two always agree.
        let listing = await registry.listing()
        let series = views.series.page(listing: listing, traffic: await sessionTraffic(of: listing, for: nil))
        return metrics.render(held: listing.held, series: series, type: config.type.name,
                              unexpectedExits: listing.unexpectedExits, draining: isDraining, ports: await registry.portPool(),
                              certificateNotAfter: certificateNotAfter)
    }
}
