import Foundation
import SciStreamClient
import SciStreamCommandLine
import SciStreamWire
import SciStreamTLS

/// `s2bench`: drives an already-running s2cs over the real control protocol with many sessions at once.
///
/// Results go to stdout as `key value` lines (one figure a line, for bench/run to pick up); failures
/// go to stderr as `Error: ...` and make the exit status 1. Usage errors exit 64.
enum Bench {
    static let command = "s2bench"

    static let connectionOptions: [OptionSpec] = [
        OptionSpec("s2cs", value: "host:port", help: "The s2cs to drive (required)."),
        OptionSpec("tls", value: "cert", help: "Reach it over TLS, trusting this certificate (its --server_crt)."),
        OptionSpec("plain", help: "Reach it in plaintext (an s2cs started with --ssl=False)."),
        OptionSpec("num_conn", value: "n", default: "1", help: "Listeners per session (s2uc --num_conn)."),
    ]

    static let setupsOptions: [OptionSpec] = connectionOptions + [
        OptionSpec("sessions", value: "n", default: "1000", help: "Sessions to set up and release."),
        OptionSpec("concurrency", value: "c", default: "32", help: "Sessions in flight at once."),
        OptionSpec("warmup", value: "n", default: "0", help: "Sessions run first and not counted."),
        OptionSpec("separate_release", help: "Release on a connection of its own, as a separate 's2uc release' does (default: on the hello's connection)."),
    ]

    static let pendingOptions: [OptionSpec] = connectionOptions + [
        OptionSpec("sessions", value: "n", default: "1000", help: "Requests held pending at once."),
        OptionSpec("open_concurrency", value: "n", default: "128", help: "Connections being opened (TCP + TLS handshake) at once."),
        OptionSpec("server_pid", value: "pid", help: "The s2cs's pid: report its RSS (VmRSS) and open descriptors at each step."),
        OptionSpec("timeout", value: "seconds", default: "120", help: "Longest wait for each phase."),
        OptionSpec("hold_connections", help: "Keep every connection open to the end (2N at the peak) instead of closing each when s2uc would."),
    ]

    static let scaleOptions: [OptionSpec] = connectionOptions + [
        OptionSpec("sessions", value: "n", default: "1000", help: "Sessions held active at once."),
        OptionSpec("concurrency", value: "c", default: "8", help: "Setups and releases in flight at once (the bulk between the timed ones)."),
        OptionSpec("probe", value: "n", default: "10", help: "Sessions set up one at a time (and timed) first and last."),
        OptionSpec("runs", value: "n", default: "20", help: "Timed lists and scrapes at each size."),
        OptionSpec("metrics", value: "host:port", help: "The s2cs's --metrics address: time a scrape of /metrics too."),
        OptionSpec("server_pid", value: "pid", help: "The s2cs's pid: its RSS, and the PSS of every process below it (the proxies)."),
        OptionSpec("leftover_timeout", value: "seconds", default: "30", help: "Longest wait, after releasing all, for the proxies to be gone and the ports free."),
        OptionSpec("s2uc", value: "path", help: "Also time this s2uc's whole 'list' process at N."),
        OptionSpec("no_traffic", help: "The s2cs counts no traffic (--type Mock): list shows no figures, and that is expected."),
        OptionSpec("control", value: "host:port", help: "A second s2cs of the same type and TLS, holding no sessions: each of the last setups is timed beside one on it, at the same moment (the machine's state apart from the N held)."),
    ]
    static let scaleUsage = "s2bench scale --s2cs <host:port> (--tls <cert> | --plain) [--sessions <n>] [--concurrency <c>] [--probe <n>] [--runs <n>] [--metrics <host:port>] [--server-pid <pid>] [--leftover-timeout <seconds>] [--s2uc <path>] [--no-traffic] [--num-conn <n>] [--control <host:port>]"

    static let soakOptions: [OptionSpec] = [
        OptionSpec("prod", value: "host:port", help: "The producer-side s2cs (required)."),
        OptionSpec("cons", value: "host:port", help: "The consumer-side s2cs (required)."),
        OptionSpec("tls", value: "cert", help: "Reach both over TLS, trusting this certificate."),
        OptionSpec("plain", help: "Reach both in plaintext."),
        OptionSpec("clients", value: "n", default: "8", help: "Clients looping at once."),
        OptionSpec("seconds", value: "s", default: "600", help: "How long the clients loop."),
        OptionSpec("bytes", value: "n", default: "1048576", help: "Bytes sent (and verified) through each tunnel."),
        OptionSpec("prod_pid", value: "pid", help: "The producer-side s2cs's pid (descriptors, threads, memory, children)."),
        OptionSpec("cons_pid", value: "pid", help: "The consumer-side s2cs's pid."),
        OptionSpec("prod_folder", value: "dir", help: "The producer-side s2cs's --config-folder (session files)."),
        OptionSpec("cons_folder", value: "dir", help: "The consumer-side s2cs's --config-folder."),
    ]
    static let soakUsage = "s2bench soak --prod <host:port> --cons <host:port> (--tls <cert> | --plain) [--clients <n>] [--seconds <s>] [--bytes <n>] [--prod-pid <pid> --cons-pid <pid>] [--prod-folder <dir> --cons-folder <dir>]"

    static func runSoak(_ parsed: ParsedArguments) async throws -> Int32 {
        func target(_ option: String) throws -> ControlTarget {
            guard let text = parsed.value(named: option) else { throw UsageError("missing --\(option) <host:port>") }
            let endpoint: Endpoint
            do { endpoint = try Endpoint.parse(text) } catch { throw UsageError("bad --\(option) '\(text)': \(error)") }
            let tls: TLSContext?
            switch (parsed.value(named: "tls"), parsed.isSet(named: "plain")) {
            case (let certificate?, false):
                do { tls = try TLSContext.client(trustAnchorPath: certificate) } catch { throw BenchError("cannot use --tls '\(certificate)': \(error)") }
            case (nil, true): tls = nil
            default: throw UsageError("give exactly one of --tls <cert> and --plain")
            }
            return ControlTarget(host: endpoint.host, port: endpoint.port, tls: tls)
        }
        let clients = try ArgumentParser.parseInt(parsed.value(named: "clients") ?? "8", option: "clients", range: 1...1000)
        let seconds = try ArgumentParser.parseInt(parsed.value(named: "seconds") ?? "600", option: "seconds", range: 1...86_400)
        let bytes = try ArgumentParser.parseInt(parsed.value(named: "bytes") ?? "1048576", option: "bytes", range: 1...(1 << 34))
        let prodPID = try parsed.value(named: "prod_pid").map { Int32(try ArgumentParser.parseInt($0, option: "prod-pid", range: 1...Int(Int32.max))) }
        let consPID = try parsed.value(named: "cons_pid").map { Int32(try ArgumentParser.parseInt($0, option: "cons-pid", range: 1...Int(Int32.max))) }
        let prod = SoakBenchmark.Gateway(target: try target("prod"), pid: prodPID, folder: parsed.value(named: "prod_folder"))
        let cons = SoakBenchmark.Gateway(target: try target("cons"), pid: consPID, folder: parsed.value(named: "cons_folder"))
        return await SoakBenchmark.run(prod: prod, cons: cons, clients: clients, duration: .seconds(seconds), bytesPerSession: bytes)
    }

    static let setupsUsage = "s2bench setups --s2cs <host:port> (--tls <cert> | --plain) [--sessions <n>] [--concurrency <c>] [--warmup <n>] [--separate-release] [--num-conn <n>]"
    static let pendingUsage = "s2bench pending --s2cs <host:port> (--tls <cert> | --plain) [--sessions <n>] [--open-concurrency <n>] [--server-pid <pid>] [--timeout <seconds>] [--hold-connections]"

    static var topHelp: String {
        """
        OVERVIEW: Benchmarks an already-running s2cs (best with --type Mock) over the real control protocol.

        USAGE: s2bench <subcommand> [options]

        SUBCOMMANDS:
          setups    N whole sessions (request, hello on a second connection, update, release), C at a time:
                    prints setups/s and the latency median and p99.
          soak      C clients loop over whole tunnels through two s2cs (real proxies) for a while, every
                    transfer verified; counts each s2cs's descriptors, threads, memory, children, files
                    before and after.
          pending   N requests all pending at once (waiting for their hello); checks that the server still
                    answers (list, one more session), then sends the N hellos, the updates and the releases;
                    prints the times, and the s2cs's RSS and descriptors with --server-pid.
          scale     N sessions with real proxies held at once: setup of the first and last few, list and a
                    /metrics scrape at a few and at N, the s2cs's RSS and the proxies' PSS per session; then
                    all released, and nothing may be left (processes, listening ports).
          echo      An echo server (the producer application of bench/run's data-plane setup latency):
                    prints the address it listens on, then echoes every byte until stopped.
          listprobe Lists an s2cs's sessions again and again as 's2uc list' does (connect, TLS, list) until a
                    stop file appears; prints the median, p99 and largest time (bench/run: while 20 setups run).
          timewait  Keeps about N loopback TCP sockets in TIME_WAIT (fills, then tops up) until stopped:
                    the busy gateway of bench/run's setup-latency rows.

        Results are 'key value' lines on stdout. Exit status: 0 when every session succeeded, 1 otherwise,
        64 for a usage error. bench/run drives both and writes docs/benchmarks.md.

        OPTIONS:
          -h, --help    Show help information.

          See 's2bench <subcommand> --help' for detailed help.
        """
    }

    static func main(_ arguments: [String]) async -> Int32 {
        guard let first = arguments.first else {
            return Console.usageError(UsageError("missing subcommand"), command: command, usage: "s2bench <subcommand> [options]")
        }
        if ["--help", "-h", "help"].contains(first) {
            Console.out(topHelp)
            return ExitCode.success
        }
        let rest = Array(arguments.dropFirst())
        switch first {
        case "setups":
            return await runCommand(rest, name: "setups", usage: setupsUsage, options: setupsOptions,
                                    abstract: "Sets up and releases N whole sessions, C at a time; prints setups/s and latency.",
                                    run: runSetups)
        case "pending":
            return await runCommand(rest, name: "pending", usage: pendingUsage, options: pendingOptions,
                                    abstract: "Holds N requests pending at once, then completes them all.",
                                    run: runPending)
        case "scale":
            return await runCommand(rest, name: "scale", usage: scaleUsage, options: scaleOptions,
                                    abstract: "Holds N sessions with real proxies at once; times setup, list and a scrape at a few and at N; then releases all.",
                                    run: runScale)
        case "soak":
            return await runCommand(rest, name: "soak", usage: soakUsage, options: soakOptions,
                                    abstract: "For a while, C clients loop over whole tunnels (set up, bytes verified, release) through two s2cs; counts leaks.",
                                    run: runSoak)
        case "echo":
            return await runCommand(rest, name: "echo", usage: EchoServer.usage, options: EchoServer.options,
                                    abstract: "Echoes every byte it receives, on any number of connections, until stopped.",
                                    run: EchoServer.run)
        case "listprobe":
            return await runCommand(rest, name: "listprobe", usage: ListProbe.usage, options: ListProbe.options,
                                    abstract: "Times 'list' (connect, TLS, list, reply) again and again until a stop file appears.",
                                    run: ListProbe.run)
        case "timewait":
            return await runCommand(rest, name: "timewait", usage: TimeWaitLoad.usage, options: TimeWaitLoad.options,
                                    abstract: "Keeps about N loopback TCP sockets in TIME_WAIT until stopped.",
                                    run: TimeWaitLoad.run)
        default:
            return Console.usageError(UsageError("unknown subcommand '\(first)'"), command: command, usage: "s2bench <subcommand> [options]")
        }
    }

    private static func runCommand(
        _ arguments: [String], name: String, usage: String, options: [OptionSpec], abstract: String,
        run: (ParsedArguments) async throws -> Int32
    ) async -> Int32 {
        let parsed: ParsedArguments
        do {
            parsed = try ArgumentParser.parse(arguments, options: options + [OptionSpec("help", aliases: ["h"], help: "")], maxPositionals: 0)
        } catch {
            return Console.usageError(error, command: "\(command) \(name)", usage: usage)
        }
        if parsed.isSet(named: "help") {
            Console.out(ArgumentParser.help(usage: usage, abstract: abstract, options: options))
            return ExitCode.success
        }
        do {
            return try await run(parsed)
        } catch let error as UsageError {
            return Console.usageError(error, command: "\(command) \(name)", usage: usage)
        } catch {
            return Console.runtimeError(error)
        }
    }

    /// The s2cs to drive and how, from the common options; validated before anything runs. A command
    /// that sets up no session (`listprobe`) does not declare `--num_conn`: `setsUpSessions: false`
    /// leaves it unread (reading an undeclared option is a programming error, ParsedArguments traps).
    static func steps(_ parsed: ParsedArguments, setsUpSessions: Bool = true) throws -> SessionSteps {
        guard let text = parsed.value(named: "s2cs") else { throw UsageError("missing --s2cs <host:port>") }
        let endpoint: Endpoint
        do { endpoint = try Endpoint.parse(text) } catch { throw UsageError("bad --s2cs '\(text)': \(error)") }
        let numConn = setsUpSessions ? try ArgumentParser.parseInt(parsed.value(named: "num_conn") ?? "1", option: "num-conn",
                                                                   range: 1...SessionLimits.maxConnectionsPerSession) : 1
        let tls: TLSContext?
        switch (parsed.value(named: "tls"), parsed.isSet(named: "plain")) {
        case (let certificate?, false):
            do { tls = try TLSContext.client(trustAnchorPath: certificate) } catch {
                throw BenchError("cannot use --tls '\(certificate)': \(error)")
            }
        case (nil, true):
            tls = nil
        case (.some, true):
            throw UsageError("--tls and --plain exclude each other")
        case (nil, false):
            throw UsageError("say how to reach the s2cs: --tls <cert> or --plain")
        }
        return SessionSteps(target: ControlTarget(host: endpoint.host, port: endpoint.port, tls: tls), numConn: UInt32(numConn))
    }

    static func printLines(_ lines: [(String, String)]) {
        let width = (lines.map(\.0.count).max() ?? 0) + 2
        for (key, value) in lines {
            Console.out(key.padding(toLength: width, withPad: " ", startingAt: 0) + value)
        }
    }

    static func runSetups(_ parsed: ParsedArguments) async throws -> Int32 {
        let steps = try steps(parsed)
        let sessions = try ArgumentParser.parseInt(parsed.value(named: "sessions") ?? "1000", option: "sessions", range: 1...10_000_000)
        let concurrency = try ArgumentParser.parseInt(parsed.value(named: "concurrency") ?? "32", option: "concurrency", range: 1...10_000)
        let warmup = try ArgumentParser.parseInt(parsed.value(named: "warmup") ?? "0", option: "warmup", range: 0...1_000_000)
        ProcessProbe.raiseDescriptorLimit()

        let benchmark = SetupsBenchmark(steps: steps, sessions: sessions, concurrency: concurrency, warmup: warmup,
                                        separateRelease: parsed.isSet(named: "separate_release"))
        let result = await benchmark.run()
        var lines: [(String, String)] = [
            ("mode", "setups"),
            ("tls", steps.target.tls == nil ? "off" : "on"),
            ("sessions", "\(sessions)"),
            ("concurrency", "\(concurrency)"),
            ("release", parsed.isSet(named: "separate_release") ? "own-connection" : "hello-connection"),
            ("ok", "\(result.latenciesMS.count)"),
            ("errors", "\(result.errorCount)"),
            ("seconds", format(result.elapsed.seconds, decimals: 3)),
            ("setups_per_s", format(Double(result.latenciesMS.count) / max(result.elapsed.seconds, 1e-9), decimals: 1)),
        ]
        if let summary = Summary(result.latenciesMS) {
            lines += [("latency_median_ms", format(summary.median, decimals: 2)),
                      ("latency_p99_ms", format(summary.p99, decimals: 2)),
                      ("latency_max_ms", format(summary.max, decimals: 2))]
        }
        printLines(lines)
        for error in result.errors { Console.err("Error: session failed: \(error)") }
        return result.errorCount == 0 ? ExitCode.success : ExitCode.failure
    }

    static func runScale(_ parsed: ParsedArguments) async throws -> Int32 {
        let steps = try steps(parsed)
        let sessions = try ArgumentParser.parseInt(parsed.value(named: "sessions") ?? "1000", option: "sessions", range: 2...100_000)
        let concurrency = try ArgumentParser.parseInt(parsed.value(named: "concurrency") ?? "8", option: "concurrency", range: 1...1000)
        let probe = try ArgumentParser.parseInt(parsed.value(named: "probe") ?? "10", option: "probe", range: 1...1000)
        guard 2 * probe <= sessions else { throw UsageError("--probe \(probe) needs at least \(2 * probe) --sessions (first and last)") }
        let runs = try ArgumentParser.parseInt(parsed.value(named: "runs") ?? "20", option: "runs", range: 1...10_000)
        let leftover = try ArgumentParser.parseInt(parsed.value(named: "leftover_timeout") ?? "30", option: "leftover-timeout", range: 1...3600)
        var metrics: Endpoint? = nil
        if let text = parsed.value(named: "metrics") {
            do { metrics = try Endpoint.parse(text) } catch { throw UsageError("bad --metrics '\(text)': \(error)") }
        }
        var pid: Int32? = nil
        if let text = parsed.value(named: "server_pid") {
            pid = Int32(try ArgumentParser.parseInt(text, option: "server-pid", range: 1...Int(Int32.max)))
            guard let pid, FileManager.default.fileExists(atPath: "/proc/\(pid)/status") else { throw UsageError("no process \(text) (--server-pid)") }
        }
        // The whole `s2uc list`, as an operator runs it.
        var listCommand: [String]? = nil
        if let s2uc = parsed.value(named: "s2uc"), let text = parsed.value(named: "s2cs") {
            guard FileManager.default.isExecutableFile(atPath: s2uc) else { throw UsageError("no executable at --s2uc '\(s2uc)'") }
            listCommand = [s2uc, "list", "--s2cs", text] + (parsed.value(named: "tls").map { ["--server_cert", $0] } ?? ["--ssl", "False"])
        }
        var control: SessionSteps? = nil
        if let text = parsed.value(named: "control") {
            do {
                let endpoint = try Endpoint.parse(text)
                control = SessionSteps(target: ControlTarget(host: endpoint.host, port: endpoint.port, tls: steps.target.tls), numConn: steps.numConn)
            } catch { throw UsageError("bad --control '\(text)': \(error)") }
        }
        ProcessProbe.raiseDescriptorLimit()
        let benchmark = ScaleBenchmark(steps: steps, sessions: sessions, concurrency: concurrency, probe: probe, runs: runs,
                                       metrics: metrics, serverPID: pid, leftoverTimeout: .seconds(leftover), listCommand: listCommand,
                                       countsTraffic: !parsed.isSet(named: "no_traffic"), control: control)
        let report = await benchmark.run()
        printLines([("mode", "scale"), ("tls", steps.target.tls == nil ? "off" : "on")] + report.lines.filter { $0.0 != "error" })
        for (key, message) in report.lines where key == "error" { Console.err("Error: \(message)") }
        return report.failed ? ExitCode.failure : ExitCode.success
    }

    static func runPending(_ parsed: ParsedArguments) async throws -> Int32 {
        let steps = try steps(parsed)
        let sessions = try ArgumentParser.parseInt(parsed.value(named: "sessions") ?? "1000", option: "sessions", range: 1...4096)
        let openConcurrency = try ArgumentParser.parseInt(parsed.value(named: "open_concurrency") ?? "128", option: "open-concurrency", range: 1...100_000)
        let timeout = try ArgumentParser.parseInt(parsed.value(named: "timeout") ?? "120", option: "timeout", range: 1...3600)
        var pid: Int32? = nil
        if let text = parsed.value(named: "server_pid") {
            pid = Int32(try ArgumentParser.parseInt(text, option: "server-pid", range: 1...Int(Int32.max)))
            guard let pid, FileManager.default.fileExists(atPath: "/proc/\(pid)/status") else {
                throw UsageError("no process \(text) (--server-pid)")
            }
        }
        let limit = ProcessProbe.raiseDescriptorLimit()
        if limit < UInt64(2 * sessions + 64) {
            throw BenchError("this process may open only \(limit) descriptors, and \(sessions) pending sessions need \(2 * sessions + 64): raise the hard limit (ulimit -Hn)")
        }
        let benchmark = PendingBenchmark(steps: steps, sessions: sessions, openConcurrency: openConcurrency,
                                         serverPID: pid, phaseTimeout: .seconds(timeout),
                                         holdConnections: parsed.isSet(named: "hold_connections"))
        let report = await benchmark.run()
        printLines([("mode", "pending"), ("tls", steps.target.tls == nil ? "off" : "on"),
                    ("connections", parsed.isSet(named: "hold_connections") ? "held" : "as-s2uc")]
                   + report.lines.filter { $0.0 != "error" })
        for (key, message) in report.lines where key == "error" { Console.err("Error: \(message)") }
        return report.failed ? ExitCode.failure : ExitCode.success
    }
}
