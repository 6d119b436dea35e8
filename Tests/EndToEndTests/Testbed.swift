import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every suite that builds the namespace testbed lives inside this one, so that they never run at
/// the same time (`.serialized` applies to nested suites too).
@Suite(.serialized) enum TestbedSuites {}

/// The four-host testbed of `scripts/testbed`, as the tests use it: the real script, with a
/// namespace prefix of this test run's own (`s2t-t<pid>-`), so that a testbed someone left up for
/// the tutorial, or another test run on this machine, is never touched.
///
/// Nothing here blocks a thread of the cooperative pool for long (it has one thread per core, and
/// other suites run alongside): commands are awaited by polling with `Task.sleep`.
enum Testbed {
    static let script = Harness.repoRoot.appendingPathComponent("scripts/testbed").path
    static let prefix = "s2t-t\(getpid())-"
    static let hosts = ["producer", "producers2", "consumers2", "consumer"]

    /// The environment the tutorial's commands run with: the test run's prefix, and the built
    /// s2uc/s2cs and certs/make-dev-cert.sh first on the PATH (as an installation would put them).
    static func environment(prefix: String = Testbed.prefix) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["S2T_PREFIX"] = prefix
        environment.removeValue(forKey: "S2T_HOME")
        environment.removeValue(forKey: "HAPROXY_CONFIG_PATH")
        let path = environment["PATH"] ?? "/usr/bin:/bin"
        environment["PATH"] = [Harness.productsFolder.path, Harness.repoRoot.appendingPathComponent("certs").path,
                               path, "/usr/sbin", "/sbin"].joined(separator: ":")
        return environment
    }

    /// The hosts' home folders (the script's default for our prefix).
    static var homeRoot: URL { URL(fileURLWithPath: "/tmp/\(prefix)home") }
    static func home(_ host: String) -> URL { homeRoot.appendingPathComponent(host) }
    static func namespace(_ host: String) -> String { prefix + host }

    /// Why this machine cannot build the testbed, or nil when it can: `scripts/testbed check`
    /// probes by making (and deleting) a namespace, and exits 3 with the reason where namespaces are
    /// not permitted. (Run once, blocking for the few milliseconds it takes.)
    static let refusal: String? = {
        let check = Harness.runSync("/bin/bash", [script, "check"])
        guard check.status != 0 else { return nil }
        let reason = check.stderr.split(separator: "\n").first.map(String.init) ?? "scripts/testbed check exited \(check.status)"
        return reason.hasPrefix("Error: ") ? String(reason.dropFirst("Error: ".count)) : reason
    }()

    /// Cancels (skips) the current test, saying why, where namespaces are not permitted.
    static func requirePermitted() throws {
        if let refusal {
            print("skipping the testbed test: \(refusal)")
            try Test.cancel("\(refusal)")
        }
    }

    /// Runs one command line as a user would type it at the repository's root, with bash, to
    /// completion; after `timeout` it is stopped (SIGTERM, then SIGKILL) and reported as failed.
    static func run(_ line: String, prefix: String = Testbed.prefix, timeout: Duration = .seconds(120)) async -> Harness.Output {
        let folder = Harness.temporaryFolder("run")
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("out"), err = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", line]
        process.environment = environment(prefix: prefix)
        process.currentDirectoryURL = Harness.repoRoot
        process.standardOutput = try? FileHandle(forWritingTo: out)
        process.standardError = try? FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        do { try runWithDefaultSignalMask(process) } catch { return Harness.Output(status: -1, stdout: "", stderr: "\(error)") }
        let finished = await waitForExit(process, timeout: timeout)
        var timedOut = ""
        if !finished {
            await terminate(process, grace: .seconds(5))
            timedOut = "\n(stopped after \(timeout): '\(line)' did not finish)"
        }
        return Harness.Output(status: timedOut.isEmpty ? process.terminationStatus : -1,
                              stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                              stderr: ((try? String(contentsOf: err, encoding: .utf8)) ?? "") + timedOut)
    }

    /// Runs `scripts/testbed` with these arguments.
    @discardableResult
    static func script(_ arguments: [String], prefix: String = Testbed.prefix) async -> Harness.Output {
        await run(([script] + arguments).map { "'\($0)'" }.joined(separator: " "), prefix: prefix)
    }

    /// The namespaces that currently exist with our prefix.
    static func namespaces(prefix: String = Testbed.prefix) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? []).filter { $0.hasPrefix(prefix) }.sorted()
    }

    /// Takes down testbeds left by earlier test runs that died before their teardown (their
    /// prefix names a process that no longer exists), then any of ours.
    static func cleanLeftovers() async {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? []
        var prefixes: Set<String> = []
        for name in names where name.hasPrefix("s2t-t") {
            let rest = name.dropFirst("s2t-t".count)
            guard let dash = rest.firstIndex(of: "-"), let pid = Int32(rest[..<dash]) else { continue }
            if pid == getpid() || !processExists(pid) { prefixes.insert("s2t-t\(pid)-") }
        }
        for stale in prefixes.sorted() { await script(["down"], prefix: stale) }
    }

    /// Brings the testbed up from nothing.
    static func up() async throws {
        await cleanLeftovers()
        let result = await script(["up"])
        guard result.status == 0 else { throw HarnessError("scripts/testbed up failed (\(result.status)): \(result.stderr)") }
    }

    /// Takes the testbed down; returns what the script said.
    @discardableResult
    static func down() async -> Harness.Output { await script(["down"]) }

    /// Runs a command inside a host, to completion.
    static func exec(_ host: String, _ command: String, timeout: Duration = .seconds(120)) async -> Harness.Output {
        await run("scripts/testbed exec \(host) \(command)", timeout: timeout)
    }

    /// Skips where namespaces are not permitted; otherwise brings the testbed up, runs `body`, and
    /// then, whatever happened, stops by PID everything the body started in the background and
    /// takes the testbed down (which also stops, by PID, anything else left in its namespaces).
    static func withTestbed(_ body: (Started) async throws -> Void) async throws {
        try requirePermitted()
        let started = Started()
        var failure: (any Error)? = nil
        do {
            try await up()
            try await body(started)
        } catch {
            failure = error
        }
        await started.stopAll()
        let down = await down()
        if down.status != 0 { Issue.record("scripts/testbed down failed: \(down.stderr)") }
        if let failure { throw failure }
    }

    /// What a test started in the background, to be stopped at its end.
    final class Started: @unchecked Sendable {  // used by one test at a time
        private var list: [Background] = []

        /// Starts a command line in the background and keeps it for the teardown.
        @discardableResult
        func start(_ line: String, _ readiness: Readiness, timeout: Duration = .seconds(20)) async throws -> Background {
            let background = try await Background(line, readiness: readiness, timeout: timeout)
            list.append(background)
            return background
        }

        func stopAll() async {
            for background in list.reversed() { await background.stop() }
            list = []
        }
    }
}

/// When a background command counts as started.
enum Readiness: Sendable {
    /// This text appears in its stdout or stderr.
    case prints(String)
    /// Something listens on this TCP port inside this host (for programs, such as an iperf3
    /// server, whose output to a file is block-buffered).
    case listens(host: String, port: Int)
}

/// A long-running command (s2cs, an iperf3 server, tcpdump) started from a command line as the
/// tutorial shows it. bash `exec`s the line, the testbed script `exec`s `ip netns exec`, which
/// `exec`s the command: the PID we hold is the command's own, and we stop it by that PID.
final class Background: @unchecked Sendable {  // used by one test at a time
    let line: String
    let process = Process()
    let folder: URL

    var stdout: String { (try? String(contentsOf: folder.appendingPathComponent("stdout"), encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: folder.appendingPathComponent("stderr"), encoding: .utf8)) ?? "" }
    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Starts `line` and waits until it is ready; if it does not get ready, stops it and throws.
    init(_ line: String, readiness: Readiness, timeout: Duration = .seconds(20)) async throws {
        self.line = line
        folder = Harness.temporaryFolder("bg")
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", "exec \(line)"]
        process.environment = Testbed.environment()
        process.currentDirectoryURL = Harness.repoRoot
        let out = folder.appendingPathComponent("stdout"), err = folder.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try runWithDefaultSignalMask(process)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            switch readiness {
            case .prints(let text):
                if stdout.contains(text) || stderr.contains(text) { return }
            case .listens(let host, let port):
                let sockets = await Testbed.run("ip netns exec \(Testbed.namespace(host)) ss -Htln sport = :\(port)", timeout: .seconds(10))
                if sockets.status == 0 && !sockets.stdout.isEmpty { return }
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        await stop()
        throw HarnessError("'\(line)' did not start (\(readiness); exit \(process.terminationStatus)):\n\(stdout)\n\(stderr)")
    }

    /// Waits for the command to exit by itself; whether it did within `timeout`.
    func waitForExit(timeout: Duration) async -> Bool {
        await EndToEndTests.waitForExit(process, timeout: timeout)
    }

    /// `signal` (SIGTERM unless told), then SIGKILL after 10 s; returns once the process is reaped,
    /// with its exit status (or the number of the signal that ended it).
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM) async -> Int32? {
        guard process.processIdentifier != 0 else { return nil }
        await terminate(process, signal: signal, grace: .seconds(10))
        return process.terminationStatus
    }

    deinit {
        // Only reached with the process still running if a test lost track of it: end it now.
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: folder)
    }
}

/// Waits, polling, for `process` to exit; whether it did within `timeout`.
func waitForExit(_ process: Process, timeout: Duration) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while process.isRunning && ContinuousClock.now < deadline {
        try? await Task.sleep(for: .milliseconds(10))
    }
    return !process.isRunning
}

/// `signal`, a grace period, then SIGKILL; returns once the process has exited (and been reaped).
func terminate(_ process: Process, signal: Int32 = SIGTERM, grace: Duration) async {
    guard process.isRunning else { return }
    kill(process.processIdentifier, signal)
    if await waitForExit(process, timeout: grace) { return }
    kill(process.processIdentifier, SIGKILL)
    _ = await waitForExit(process, timeout: .seconds(30))
}

/// Starts `process` from a thread whose signal mask is empty. Foundation's Process hands the
/// calling thread's signal mask on to the child, and the threads tests run on block nearly every
/// signal: a child started from one of them never sees SIGTERM or SIGINT (an iperf3 server or a
/// tcpdump would then have to be killed). A terminal starts commands with nothing blocked.
func runWithDefaultSignalMask(_ process: Process) throws {
    final class Launch: @unchecked Sendable {  // written by the thread before it signals `done`, read after
        let process: Process
        var error: (any Error)? = nil
        let done = DispatchSemaphore(value: 0)
        init(_ process: Process) { self.process = process }
    }
    let launch = Launch(process)
    let thread = Thread {
        var empty = sigset_t()
        sigemptyset(&empty)
        pthread_sigmask(SIG_SETMASK, &empty, nil)
        do { try launch.process.run() } catch { launch.error = error }
        launch.done.signal()
    }
    thread.start()
    launch.done.wait()  // the few milliseconds of a spawn
    if let error = launch.error { throw error }
}
