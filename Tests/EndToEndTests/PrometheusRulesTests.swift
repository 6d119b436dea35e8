import Foundation
import Testing

/// deploy/prometheus/: the alert rules checked and unit-tested by Prometheus's own promtool
/// (Debian's prometheus package), the scrape config checked, and every metric the rules and the
/// Grafana dashboard use served by a real s2cs.
@Suite struct PrometheusRulesTests {
    static let folder = Harness.repoRoot.appendingPathComponent("deploy/prometheus")
    static let promtool = "/usr/bin/promtool"

    @Test func promtoolChecksAndUnitTestsTheRulesAndTheScrapeConfig() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.promtool), "promtool is not installed: scripts/install-deps test (prometheus)")
        for arguments in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"], ["check", "config", "scrape.yml"]] {
            let result = await Harness.run(Self.promtool, arguments, cwd: Self.folder)
            #expect(result.status == 0, "promtool \(arguments.joined(separator: " ")):\n\(result.stdout)\(result.stderr)")
        }
    }

    /// The metric names a PromQL text uses (s2cs's, and process_start_time_seconds).
    static func metricNames(_ text: String) throws -> Set<String> {
        let pattern = try NSRegularExpression(pattern: #"\b(s2cs_[a-z_]+|process_start_time_seconds)\b"#)
        var names: Set<String> = []
        for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
            names.insert(String(text[Range(match.range(at: 1), in: text)!]))
        }
        return names
    }

    @Test func everyMetricTheRulesAndTheDashboardUseIsServed() async throws {
        let rules = try String(contentsOf: Self.folder.appendingPathComponent("alerts.yml"), encoding: .utf8)
        let dashboardData = try Data(contentsOf: Self.folder.appendingPathComponent("grafana-dashboard.json"))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: dashboardData) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        #expect(!panels.isEmpty)
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        var used = try Self.metricNames(rules)
        for expression in expressions { used.formUnion(try Self.metricNames(expression)) }
        #expect(used.count > 8, "\(used)")

        let daemon = try await Daemon(extra: ["--metrics", "127.0.0.1:0"])
        let page = try await MetricsTests.scrape(try MetricsTests.metricsPort(daemon))
        // Histogram and counter samples carry suffixes the families do not.
        let served = Set(page.samples.keys.map { String($0.prefix { $0 != "{" }) })
        for name in used.sorted() where !name.hasSuffix("_bucket") {
            #expect(served.contains(name) || served.contains(name + "_total") || page.types[name] != nil, "\(name) is used but s2cs does not serve it")
        }
    }
}
