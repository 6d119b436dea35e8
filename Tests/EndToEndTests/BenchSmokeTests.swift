import Foundation
import Testing
import TestPorts
#if canImport(Glibc)
import Glibc
#endif

/// Keeps the benchmark from rotting: `bench/run --quick` with the products this test run built
/// (s2cs, s2uc and s2bench sit beside the test bundle). It measures nothing worth keeping; it checks
/// that every path of the benchmark still runs, without an error, and prints its whole tables: the
/// control plane's, and the data plane's for one type (Nginx: a real tunnel through two s2cs, its
/// hand-configured pair from bench/reference/, iperf3, setup latency and release, idle and with
/// sockets in TIME_WAIT, and `list` while setups run), the restart section (bench/restart, one 4 s
/// Nginx round: the producer-side s2cs restarted under a stream), and the scale section with 20
/// Nginx sessions.
@Suite struct BenchSmokeTests {
    static let rows = [
        "| Figure | Median | Min – max | Runs | Target |",
        "| Session setups/s, TLS |",
        "| Session setups/s, plaintext |",
        "| Session setups/s, TLS, release on its own connection |",
        "| Setup latency median, TLS (ms) |",
        "| Setup latency p99, TLS (ms) |",
        "| s2uc inbound_request process wall time, TLS (ms) |",
        "| Pending sessions: all N requests pending, TLS (s) |",
        "| Pending sessions: N hellos until all N requests OK, TLS (s) |",
        "| Pending sessions: errors and refused connections (all variants) | 0 |",
        "| s2cs RSS idle, TLS (MiB) |",
        "| s2cs RSS, N requests pending, TLS (MiB) |",
        "| s2cs RSS, N sessions active, clients gone, TLS (MiB) |",
        "| Type | Streams | Tunnel (Gbit/s) | Hand-configured (Gbit/s) | Tunnel / hand |",
        "| Type | Condition | inbound_request | outbound_request | Connect + first byte | Setup total |",
        "| Figure | Median | p99 | Largest | Target |",
        "| Type | Setting (both sides) | -P 1 (Gbit/s) | -P 1 × defaults | -P 4 (Gbit/s) | -P 4 × defaults |",
        "| Type | Rounds | Restart (ms) | Stream gap (ms) | Streamed (s) |",
        "| Type | N | list at 10 (ms) | list at N (ms) | list N / 10 | scrape at 10 (ms) | scrape at N (ms) |",
    ]

    /// Data-plane rows that must carry figures (a failed measurement prints "-").
    static let figures = [
        #"^\| Direct, no tunnel \| -P 1 \| [0-9.]+ \|"#,
        #"^\| Direct, no tunnel \| -P 4 \| [0-9.]+ \|"#,
        #"^\| Nginx \| -P 1 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|"#,
        #"^\| Nginx \| -P 4 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|"#,
        #"^\| Nginx, --num_conn 1 \| -P 4 \| [0-9.]+ \| [0-9.]+ \|"#,
        // the generated tunnel against the same with --proxy-buffer-size default, and plaintext ones
        #"^\| Nginx \| -P 4 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|"#,
        #"^\| Nginx, plaintext \| -P 1 \| [0-9.]+ \| \| \| [0-9.]+ \| [0-9.]+ \|"#,
        // buffers: a hand-configured pair with a buffer size, against the proxy's defaults
        #"^\| Nginx \| `proxy_buffer_size 64k;` \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 128 \| auto \| 125 \|$"#,
        // setup, idle and with sockets in TIME_WAIT: inbound, outbound, first byte, total; target;
        // release twice; runs
        #"^\| Nginx \| idle \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [^|]+ \| [0-9.]+ \| [0-9.]+ \| 1 \|$"#,
        #"^\| Nginx \| TIME_WAIT \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| ≤ 1.25 × idle: [0-9.]+, [^|]+ \| [0-9.]+ \| [0-9.]+ \| 1 \|$"#,
        // list while setups run: median, p99, largest
        #"^\| list, connect to reply \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| "#,
        // restart: one round, restart, gap, seconds streamed, slowest interval, one connection kept, the
        // round ok, sent − received, reload
        #"^\| Nginx \| 1 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 1 \(1: n/a \(quick\)\) \| 1 of 1 \(n/a \(quick\)\) \| [0-9.]+ \| [0-9.]+ \|$"#,
        // scale: 20 Nginx sessions on one s2cs: list, scrape, s2uc list, setup first and last, the
        // last beside a second s2cs's, RSS, PSS and the machine's Shmem per session, processes (a
        // master and a worker per session), release, nothing left
        #"^\| Nginx \| 20 \| [0-9.]+ \| [0-9.]+ [^|]+\| [0-9.]+ [^|]+\| [0-9.]+ \| [0-9.]+ [^|]+\| [0-9.]+ [^|]+\| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ [^|]+\| [0-9.]+ \| [0-9.]+ [^|]+\| [0-9.]+ [^|]+\| [0-9.]+ \| -?[0-9.]+ \| 40 \| [0-9.]+ \| 0 processes, 0 ports: [^|]+\|$"#,
    ]

    @Test func quickBenchmarkRunsAndPrintsItsTable() async throws {
        let s2bench = Harness.productsFolder.appendingPathComponent("s2bench").path
        try #require(FileManager.default.isExecutableFile(atPath: s2bench), "no s2bench beside s2cs in \(Harness.productsFolder.path)")
        let script = Harness.repoRoot.appendingPathComponent("bench/run").path
        // Its ports: a block reserved for this run (bench/run uses 1,000 from BENCH_PORT_BASE).
        let ports = try PortBlock.reserve(1000)
        var environment = ProcessInfo.processInfo.environment
        environment["BENCH_PORT_BASE"] = "\(ports.lower)"
        // Past the timeout bench/run gets SIGTERM (it then stops and reaps what it started), then SIGKILL.
        let output = await Harness.run("/bin/bash", [script, "--quick", "--no-build", "--bin", Harness.productsFolder.path],
                                       environment: environment, timeout: .seconds(120))
        #expect(output.status == 0, "exit \(output.status); stderr: \(output.stderr)")
        let lines = output.stdout.split(separator: "\n").map(String.init)
        for row in Self.rows {
            #expect(lines.contains { $0.hasPrefix(row) }, "no line starting '\(row)' in:\n\(output.stdout)")
        }
        for pattern in Self.figures {
            let regex = try Regex(pattern)
            #expect(lines.contains { $0.firstMatch(of: regex) != nil }, "no line matching '\(pattern)' in:\n\(output.stdout)")
        }
        #expect(!output.stdout.contains("Wrote"), "--quick must not write docs/benchmarks.md")
    }

    /// bench/profile: a real Nginx tunnel, 5 s of iperf3, CPU times only (perf may not be allowed here).
    @Test func profileRunsAndPrintsCPUPerGiB() async throws {
        let ports = try PortBlock.reserve(12)
        let script = Harness.repoRoot.appendingPathComponent("bench/profile").path
        let output = await Harness.run("/bin/bash", [script, "--type", "Nginx", "--seconds", "5", "--no-perf", "--buffers", "32k",
                                                     "--bin", Harness.productsFolder.path, "--port-base", "\(ports.lower)"],
                                       timeout: .seconds(60))
        #expect(output.status == 0, "exit \(output.status); stderr: \(output.stderr)")
        #expect(output.stdout.hasPrefix("Nginx tunnel, iperf3 -P 1 -t 5, --proxy-buffer-size 32k, load average "), "\(output.stdout)")
        let regex = try Regex(#"CPU seconds per GiB: producer-side proxy [0-9.]+, consumer-side proxy [0-9.]+, iperf3 server [0-9.]+, iperf3 client [0-9.]+, all [0-9.]+"#)
        #expect(output.stdout.firstMatch(of: regex) != nil, "\(output.stdout)")
        #expect(output.stdout.contains("receiver: ") && !output.stdout.contains("receiver: GiB"), "\(output.stdout)")
    }

    /// bench/restart --quick: a real HAProxy tunnel whose producer-side s2cs is restarted during
    /// 4 s of iperf3: the stream goes on, on its one connection, and the figures are printed.
    @Test func restartRunsAndTheStreamGoesOn() async throws {
        let ports = try PortBlock.reserve(30)
        let script = Harness.repoRoot.appendingPathComponent("bench/restart").path
        let output = await Harness.run("/bin/bash", [script, "--quick", "--bin", Harness.productsFolder.path, "--port-base", "\(ports.lower)"],
                                       timeout: .seconds(90))
        #expect(output.status == 0, "exit \(output.status); stdout: \(output.stdout) stderr: \(output.stderr)")
        #expect(output.stdout.contains("connections          1 "), "\(output.stdout)")
        for row in ["restart_ms", "stream_gap_ms", "slowest_interval", "reload_ms_median"] {
            #expect(output.stdout.split(separator: "\n").contains { $0.hasPrefix(row + " ") && $0.dropFirst(row.count).trimmingCharacters(in: .whitespaces).first?.isNumber == true }, "\(row): \(output.stdout)")
        }
    }

    /// bench/generated-buffers: two real Nginx tunnels (default and 64k buffers), one 1-second round;
    /// every row carries a figure and a ratio to the first size.
    @Test func generatedBuffersRunsAndPrintsEverySize() async throws {
        let ports = try PortBlock.reserve(200)
        let script = Harness.repoRoot.appendingPathComponent("bench/generated-buffers").path
        let output = await Harness.run("/bin/bash", [script, "--type", "Nginx", "--size", "default", "--size", "64k", "--rounds", "1",
                                                     "--seconds", "1", "--bin", Harness.productsFolder.path, "--port-base", "\(ports.lower)"],
                                       timeout: .seconds(90))
        #expect(output.status == 0, "exit \(output.status); stderr: \(output.stderr)")
        for streams in [1, 4] {
            for (size, ratio) in [("default", "1"), ("64k", "[0-9.]+")] {
                let regex = try Regex("^Nginx +-P \(streams) +\(size) +[0-9.]+ +\(ratio)$")
                #expect(output.stdout.split(separator: "\n").contains { $0.firstMatch(of: regex) != nil }, "no row for -P \(streams) \(size) in:\n\(output.stdout)")
            }
        }
    }
}
