import Foundation

/// Order statistics of a sample, in the units the caller chose (here: milliseconds).
struct Summary: Sendable {
    let count: Int
    let median: Double
    let p99: Double
    let min: Double
    let max: Double

    /// nil for an empty sample. The median of an even count is the mean of the two middle values;
    /// p99 is the nearest-rank percentile (the smallest value with at least 99 % of the sample at or below it).
    init?(_ values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let n = sorted.count
        count = n
        median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        let rank = Int((0.99 * Double(n)).rounded(.up))
        p99 = sorted[Swift.max(0, Swift.min(n, rank) - 1)]
        min = sorted[0]
        max = sorted[n - 1]
    }
}

extension Duration {
    var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }

    var seconds: Double { milliseconds / 1000 }
}

/// A number for the report: fixed decimals, no locale.
func format(_ value: Double, decimals: Int = 1) -> String {
    String(format: "%.\(decimals)f", value)
}
