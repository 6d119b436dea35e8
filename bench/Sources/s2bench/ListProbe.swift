import Foundation
import SciStreamCommandLine
import SciStreamWire

/// `s2bench listprobe`: asks an s2cs for its session list again and again, each time as `s2uc list`
/// does (a new connection, the TLS handshake, `list`, its reply), and times each from the connect
/// to the reply. It starts when `--start-file` exists (at once without one), stops when
/// `--stop-file` exists (or after `--seconds`) and prints the count,
/// median, p99 and largest time: what an operator's `list` waits while the gateway is busy.
enum ListProbe {
    static let options: [OptionSpec] = Bench.connectionOptions.filter { $0.name != "num_conn" } + [
        OptionSpec("interval_ms", value: "ms", default: "10", help: "Pause between two lists."),
        OptionSpec("seconds", value: "s", default: "60", help: "Longest run."),
        OptionSpec("start_file", value: "path", help: "Begin only once this file exists."),
        OptionSpec("stop_file", value: "path", help: "Stop as soon as this file exists."),
    ]
    static let usage = "s2bench listprobe --s2cs <host:port> (--tls <cert> | --plain) [--interval-ms <ms>] [--seconds <s>] [--start-file <path>] [--stop-file <path>]"

    static func run(_ parsed: ParsedArguments) async throws -> Int32 {
        let steps = try Bench.steps(parsed, setsUpSessions: false)
        let interval = try ArgumentParser.parseInt(parsed.value(named: "interval_ms") ?? "10", option: "interval-ms", range: 0...60_000)
        let seconds = try ArgumentParser.parseInt(parsed.value(named: "seconds") ?? "60", option: "seconds", range: 1...3600)
        let stopFile = parsed.value(named: "stop_file")
        let clock = ContinuousClock()
        let end = clock.now + .seconds(seconds)
        if let startFile = parsed.value(named: "start_file") {
            while !FileManager.default.fileExists(atPath: startFile), clock.now < end {
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        var times: [Double] = []
        var errors: [String] = []
        while clock.now < end {
            if let stopFile, FileManager.default.fileExists(atPath: stopFile) { break }
            let began = clock.now
            do {
                _ = try await steps.states()
                times.append((clock.now - began).milliseconds)
            } catch {
                errors.append("\(error)")
            }
            try? await Task.sleep(for: .milliseconds(interval))
        }
        var lines: [(String, String)] = [("mode", "listprobe"), ("lists", "\(times.count)"), ("errors", "\(errors.count)")]
        if let summary = Summary(times) {
            lines += [("list_median_ms", format(summary.median, decimals: 2)),
                      ("list_p99_ms", format(summary.p99, decimals: 2)),
                      ("list_max_ms", format(summary.max, decimals: 2))]
        }
        Bench.printLines(lines)
        for error in errors.prefix(5) { Console.err("Error: list failed: \(error)") }
        return errors.isEmpty ? ExitCode.success : ExitCode.failure
    }
}
