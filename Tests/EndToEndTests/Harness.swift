import Foundation
import Testing
import Synchronization
import TestPorts
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `s2cs` and `s2uc` as a user would, on loopback, and cleans up after itself.
enum Harness {
    /// The folder holding the built products (the test bundle sits beside s2cs and s2uc).
    static let productsFolder: URL = {
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var folder = exe.deletingLastPathComponent()
        // The bundle may be a folder (.xctest/...); walk up until s2cs is found.
        for _ in 0..<4 {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("s2cs").path) { return folder }
            folder = folder.deletingLastPathComponent()
        }
        return exe.deletingLastPathComponent()
    }()

    static var s2cs: String { productsFolder.appendingPathComponent("s2cs").path }
    static var s2uc: String { productsFolder.appendingPathComponent("s2uc").path }

    static let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A fresh temporary folder.
    static func temporaryFolder(_ name: String = "e2e") -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("scistream-\(name)-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Development certificates for 127.0.0.1, localhost and ::1, made once per test run by certs/make-dev-cert.sh.
    static let certificates: (folder: URL, crt: String, key: String) = {
        let folder = temporaryFolder("certs")
        let result = runSync("/bin/bash", [repoRoot.appendingPathComponent("certs/make-dev-cert.sh").path, "-o", folder.path, "127.0.0.1", "localhost", "::1"])
        precondition(result.status == 0, "make-dev-cert.sh failed: \(result.stderr)")
        return (folder, folder.appendingPathComponent("server.crt").path, folder.appendingPathComponent("server.key").path)
    }()

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
        var lines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty } }
    }

    /// Runs a command to completion (blocking; for set-up only).
    static func runSync(_ path: String, _ arguments: [String], cwd: URL? = nil) -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let cwd { process.currentDirectoryURL = cwd }
        let folder = temporaryFolder("run")
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("out"), err = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try? FileHandle(forWritingTo: out)
        process.standardError = try? FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return Output(status: -1, stdout: "", stderr: "\(error)") }
        process.waitUntilExit()
        return Output(status: process.terminationStatus,
                      stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }

    /// Runs a command to completion without blocking a cooperative thread, with stdin from `input`
    /// (or /dev/null). Foundation starts it as the leader of a process group of its own; past
    /// `timeout` that whole group (a script and what it started) gets SIGTERM, SIGKILL 10 s later
    /// or as soon as the command itself has exited, whichever is first, and the command is reaped;
    /// the test fails with a message naming the command, and the output says so (status -1).
    static func run(_ path: String, _ arguments: [String], cwd: URL? = nil, environment: [String: String]? = nil,
                    input: URL? = nil, timeout: Duration = .seconds(60),
                    sourceLocation: SourceLocation = #_sourceLocation) async -> Output {
        let folder = temporaryFolder("run")
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("out"), err = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let cwd { process.currentDirectoryURL = cwd }
        if let environment { process.environment = environment }
        process.standardOutput = try? FileHandle(forWritingTo: out)
        process.standardError = try? FileHandle(forWritingTo: err)
        process.standardInput = input.flatMap { try? FileHandle(forReadingFrom: $0) } ?? FileHandle.nullDevice
        let watchdog = Watchdog()
        // The termination handler runs once Foundation has reaped the child.
        var status: Int32 = await withCheckedContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { process.terminationHandler = nil; continuation.resume(returning: -1); return }
            watchdog.start(pid: process.processIdentifier, after: timeout)
        }
        watchdog.cancel()
        if watchdog.fired { watchdog.killGroup() }
        var stderr = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        if watchdog.fired {
            let command = ([path] + arguments).joined(separator: " ")
            Issue.record("timed out after \(timeout), killed (exit status \(status)): \(command)", sourceLocation: sourceLocation)
            stderr += "\n[harness: timed out after \(timeout), killed]"
            status = -1
        }
        return Output(status: status, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "", stderr: stderr)
    }

    static func s2uc(_ arguments: [String], cwd: URL? = nil, timeout: Duration = .seconds(60),
                     sourceLocation: SourceLocation = #_sourceLocation) async -> Output {
        await run(s2uc, arguments, cwd: cwd, timeout: timeout, sourceLocation: sourceLocation)
    }
}

/// A running `s2cs` process, started with `--port 0`; its port is read from what it prints.
final class Daemon: @unchecked Sendable {  // used by one test at a time
    let process = Process()
    let folder: URL
    private(set) var port: UInt16 = 0
    let tls: Bool
    /// Its `--port-range`: reserved for this test (see `PortBlock`), never a fixed range.
    let ports: PortBlock

    /// The HOME it was started with, without `--config-folder` (nil: it was given one of its own).
    let home: URL?
    /// A session folder the test gave it (and keeps: a restarted s2cs is given the same one).
    let sessionFolder: URL?

    var address: String { "127.0.0.1:\(port)" }
    /// Its session folder: the one it was given, or in `home` the default one of its control port.
    var configFolder: URL {
        sessionFolder ?? home.map { $0.appendingPathComponent(".scistream/s2cs-\(port)") } ?? folder.appendingPathComponent("scistream")
    }
    var log: String { (try? String(contentsOf: folder.appendingPathComponent("stderr"), encoding: .utf8)) ?? "" }
    var pid: Int32 { process.processIdentifier }

    /// Common s2uc arguments to reach this daemon.
    var clientArguments: [String] {
        tls ? ["--s2cs", address, "--server_cert", Harness.certificates.crt] : ["--s2cs", address, "--ssl", "False"]
    }

    /// With `home`, s2cs runs with HOME set to it, no `$HAPROXY_CONFIG_PATH` and no `--config-folder`:
    /// the default folder, as on a gateway where nobody chose one.
    init(type: String = "Mock", tls: Bool = true, ports: PortBlock? = nil, extra: [String] = [], environment: [String: String] = [:],
         verbose: Bool = true, home: URL? = nil, sessionFolder: URL? = nil, executable: String = Harness.s2cs,
         launcher: [String] = []) async throws {
        self.tls = tls
        self.ports = try ports ?? PortBlock.reserve()
        self.home = home
        self.sessionFolder = sessionFolder
        folder = Harness.temporaryFolder("s2cs")
        // `launcher` runs s2cs (setpriv to start it as another user): its program, then its arguments.
        process.executableURL = URL(fileURLWithPath: launcher.first ?? executable)
        var arguments = Array(launcher.dropFirst()) + (launcher.isEmpty ? [] : [executable]) + ["--port", "0", "--bind", "127.0.0.1", "--listener-ip", "127.0.0.1", "--type", type]
            + (home == nil ? ["--config_folder", (sessionFolder ?? folder.appendingPathComponent("scistream")).path] : [])
            + ["--port-range", self.ports.description] + (verbose ? ["--verbose"] : [])
        if tls {
            arguments += ["--server_crt", Harness.certificates.crt, "--server_key", Harness.certificates.key]
        } else {
            arguments += ["--ssl=False"]
        }
        process.arguments = arguments + extra
        var env = ProcessInfo.processInfo.environment
        if let home {
            env["HOME"] = home.path
            env.removeValue(forKey: "HAPROXY_CONFIG_PATH")
        }
        env.merge(environment) { _, new in new }
        process.environment = env
        let out = folder.appendingPathComponent("stdout"), err = folder.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("s2cs listening on ") }),
               let colon = line.lastIndex(of: ":"), let port = UInt16(line[line.index(after: colon)...]) {
                self.port = port
                return
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        stop()
        throw HarnessError("s2cs did not start: \(log)")
    }

    /// SIGTERM, then wait for the exit (SIGKILL after 10 s).
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: folder)
    }
}

/// What s2cs wrote in a session folder for its sessions: without its lock file (`s2cs.lock`, there
/// while s2cs runs and after), its audit log (`audit.log`, kept) and its admin socket (`admin.sock`,
/// there while it runs).
func sessionFolderEntries(_ folder: URL) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0 != "s2cs.lock" && !$0.hasPrefix("audit.log") && $0 != "admin.sock" }
}

/// Stops a process group that outlives its time: SIGTERM to the group, then SIGKILL 10 s later.
/// `pid` leads the group (Foundation's `Process` starts every child with `setpgid(0, 0)`), so a
/// script's background children get the signals too, not only the script.
final class Watchdog: Sendable {
    private let state = Mutex<(fired: Bool, group: pid_t, task: Task<Void, Never>?)>((false, 0, nil))

    var fired: Bool { state.withLock { $0.fired } }

    func start(pid: Int32, after timeout: Duration) {
        // Only a group this child leads: never signal the test runner's own group.
        let group = getpgid(pid) == pid ? pid : 0
        let task = Task { [self] in
            guard (try? await Task.sleep(for: timeout)) != nil else { return }
            state.withLock { $0.fired = true }
            Self.signal(pid: pid, group: group, SIGTERM)
            guard (try? await Task.sleep(for: .seconds(10))) != nil else { return }
            Self.signal(pid: pid, group: group, SIGKILL)
        }
        state.withLock { $0.group = group; $0.task = task }
    }

    func cancel() { state.withLock { $0.task?.cancel() } }

    /// SIGKILL to what is left of the group once its leader has exited and been reaped: the group id
    /// cannot have been reused while members remain.
    func killGroup() {
        let group = state.withLock { $0.group }
        if group > 0 { kill(-group, SIGKILL) }
    }

    private static func signal(pid: pid_t, group: pid_t, _ signal: Int32) {
        if group > 0 { kill(-group, signal) } else { kill(pid, signal) }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Whether a process with this pid still runs. A zombie (exited, not yet reaped by its new parent
/// after its own parent died) does not count: it holds no port, no file, no CPU.
func processExists(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 || errno != ESRCH else { return false }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].split(separator: " ").first
    return state != "Z" && state != "X"
}
