#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import SciStreamSystem

/// Supervision of /bin/sh children: exit codes, signals, exec failures, teardown, reaping.
@Suite("ChildProcess")
final class ChildProcessTests {
    let folder: String

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    init() throws {
        ProcessReaper.becomeSubreaper()
        var template = Array("/tmp/scistream-child-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        try #require(made != nil)
        folder = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func sh(_ script: String, log: String = "child.log", environment: [String] = ["PATH=/usr/bin:/bin"]) async throws -> ChildProcess {
        try await ChildProcess.spawn(executable: "/bin/sh", arguments: ["-c", script], environment: environment,
                                     logPath: folder + "/" + log)
    }

    func logText(_ name: String = "child.log") -> String {
        (try? String(contentsOfFile: folder + "/" + name, encoding: .utf8)) ?? ""
    }

    /// Waits until the log holds `text` (the child got that far), for at most 10 s.
    func awaitLog(_ text: String, _ name: String = "child.log", sourceLocation: SourceLocation = #_sourceLocation) async {
        let deadline = ContinuousClock.now + .seconds(10)
        while !logText(name).contains(text) {
            guard ContinuousClock.now < deadline else {
                Issue.record("the child did not write '\(text)' within 10 s: \(logText(name))", sourceLocation: sourceLocation)
                return
            }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// The pid no longer exists: kill(pid, 0) fails with ESRCH (no zombie either).
    func assertGone(_ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(kill(pid, 0) == -1, sourceLocation: sourceLocation)
        #expect(errno == ESRCH, sourceLocation: sourceLocation)
        #expect(ProcessReaper.stat(pid: pid) == nil, sourceLocation: sourceLocation)
    }

    @Test func exitCodeIsReported() async throws {
        let child = try await sh("exit 3")
        let status = await child.wait()
        #expect(status == .exited(code: 3))
        #expect(status?.description == "exited with code 3")
        #expect(child.status == .exited(code: 3))
        assertGone(child.pid)
    }

    @Test func zeroExit() async throws {
        let child = try await sh("true")
        #expect(await child.wait() == .exited(code: 0))
        assertGone(child.pid)
    }

    @Test func signalIsReported() async throws {
        let child = try await sh("kill -TERM $$; sleep 5")
        let status = await child.wait()
        #expect(status == .signaled(signal: SIGTERM))
        #expect(status?.description == "killed by SIGTERM")
        assertGone(child.pid)
    }

    @Test func missingBinaryIsAnErrorWithErrno() async throws {
        do {
            _ = try await ChildProcess.spawn(executable: folder + "/no-such-proxy", arguments: [], environment: [],
                                             logPath: folder + "/missing.log")
            Issue.record("spawn of a missing binary succeeded")
        } catch {
            #expect(error.errno == Errno(ENOENT))
            #expect(error.description.hasSuffix("no-such-proxy: No such file or directory"))
        }
    }

    @Test func nonExecutableIsAnError() async throws {
        let path = folder + "/not-executable"
        _ = FileManager.default.createFile(atPath: path, contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o600])
        do {
            _ = try await ChildProcess.spawn(executable: path, arguments: [], environment: [], logPath: folder + "/ne.log")
            Issue.record("spawn of a non-executable file succeeded")
        } catch {
            #expect(error.errno == Errno(EACCES))
        }
    }

    @Test func unopenableLogIsAnError() async throws {
        do {
            _ = try await ChildProcess.spawn(executable: "/bin/true", arguments: [], environment: [],
                                             logPath: folder + "/no-such-dir/x.log")
            Issue.record("spawn with an unopenable log succeeded")
        } catch {
            #expect(error.errno == Errno(ENOENT))
        }
    }

    @Test func outputIsAppendedToTheLog() async throws {
        for round in 1...2 {
            let child = try await sh("echo out\(round); echo err\(round) >&2", log: "append.log")
            #expect(await child.wait() == .exited(code: 0))
        }
        #expect(logText("append.log") == "out1\nerr1\nout2\nerr2\n")
        var info = stat()
        #expect(stat(folder + "/append.log", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
    }

    @Test func filesTheChildCreatesArePrivate() async throws {
        let child = try await sh("echo x > \(folder)/made-by-child", log: "umask.log")
        #expect(await child.wait() == .exited(code: 0))
        var info = stat()
        #expect(stat(folder + "/made-by-child", &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
    }

    @Test func stdinIsDevNull() async throws {
        let child = try await sh("cat; echo done", log: "stdin.log")
        #expect(await child.wait(timeout: .seconds(10)) == .exited(code: 0))
        #expect(logText("stdin.log") == "done\n")
    }

    @Test func environmentIsPassed() async throws {
        let child = try await sh("echo \"$SCISTREAM_TEST\"; echo \"${HOME:-unset}\"", log: "env.log",
                                 environment: ["SCISTREAM_TEST=hello world"])
        #expect(await child.wait() == .exited(code: 0))
        #expect(logText("env.log") == "hello world\nunset\n")
    }

    @Test func onlyStandardDescriptorsAreInherited() async throws {
        // A descriptor opened without O_CLOEXEC in the parent must not reach the child.
        let leaked = open("/dev/null", O_RDONLY)
        defer { close(leaked) }
        // ls lists its own descriptors: 0, 1, 2 and the one it reads the directory with.
        let child = try await sh("exec ls /proc/self/fd", log: "fds.log")
        #expect(await child.wait() == .exited(code: 0))
        let fds = logText("fds.log").split(separator: "\n").compactMap { Int($0) }
        #expect(fds.count == 4, "descriptors: \(fds)")
        #expect(Array(fds.prefix(3)) == [0, 1, 2])
        #expect(!fds.contains(Int(leaked)) || fds.last == Int(leaked))  // ls may reuse the number for its own directory
    }

    @Test func newSessionDefaultSignalsEmptyMask() async throws {
        // Read by grep about itself (sh blocks signals while it waits for a command).
        let child = try await sh("grep -E '^(SigBlk|SigIgn):' /proc/self/status; exec sleep 5", log: "signals.log")
        await awaitLog("SigIgn:", "signals.log")
        let info = try #require(ProcessReaper.stat(pid: child.pid))
        #expect(info.processGroup == child.pid)  // setsid: its own group...
        #expect(getsid(child.pid) == child.pid)  // ...and session
        await child.terminate(grace: .seconds(2))
        #expect(logText("signals.log") == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n")
        assertGone(child.pid)
    }

    @Test func terminateStopsAChildThatHandlesTerm() async throws {
        let child = try await sh("trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done")
        await awaitLog("ready")
        let status = await child.terminate(grace: .seconds(5))
        // Either sh handles TERM (exit 0) or the sleep in the group dies first and sh exits 0/143.
        #expect(status != .signaled(signal: SIGKILL))
        assertGone(child.pid)
    }

    @Test func terminateKillsAChildThatIgnoresTerm() async throws {
        let child = try await sh("trap '' TERM; echo ready; while :; do sleep 0.05; done")
        await awaitLog("ready")
        let start = ContinuousClock.now
        let status = await child.terminate(grace: .milliseconds(500))
        let elapsed = ContinuousClock.now - start
        #expect(status == .signaled(signal: SIGKILL))
        #expect(elapsed >= .milliseconds(450))
        #expect(elapsed < .seconds(30))  // bounded; generous, the machine is shared
        assertGone(child.pid)
        #expect(ProcessReaper.members(ofGroup: child.pid).isEmpty)
    }

    @Test func terminateOfAnExitedChildReturnsItsStatus() async throws {
        let child = try await sh("exit 7")
        _ = await child.wait()
        #expect(await child.terminate() == .exited(code: 7))
        #expect(child.signalGroup(SIGTERM) == false)  // the pid is released: never signalled again
    }

    @Test func waitTimesOutWhileRunning() async throws {
        let child = try await sh("sleep 120")
        #expect(await child.wait(timeout: .milliseconds(100)) == nil)
        #expect(child.status == nil)
        #expect(await child.terminate(grace: .seconds(2)) == .signaled(signal: SIGTERM))
        assertGone(child.pid)
    }

    @Test func manyWaitersAllSeeTheStatus() async throws {
        let child = try await sh("sleep 0.2; exit 4")
        let statuses = await withTaskGroup(of: TerminationStatus?.self) { group in
            for _ in 0..<20 { group.addTask { await child.wait() } }
            var all: [TerminationStatus?] = []
            for await status in group { all.append(status) }
            return all
        }
        #expect(statuses.count == 20)
        #expect(statuses.allSatisfy { $0 == .exited(code: 4) })
    }

    @Test func orphanedGroupMembersAreKilledAndReaped() async throws {
        // The leader dies by SIGKILL (like a crashed proxy master); its children must not survive
        // (an nginx worker would keep serving) nor stay as zombies.
        let child = try await sh("sleep 30 & sleep 30 & wait")
        var members: [Int32] = []
        for _ in 0..<50 {
            members = ProcessReaper.members(ofGroup: child.pid).filter { $0 != child.pid }
            if members.count == 2 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(members.count == 2)
        #expect(kill(child.pid, SIGKILL) == 0)
        #expect(await child.wait(timeout: .seconds(10)) == .signaled(signal: SIGKILL))
        assertGone(child.pid)
        for member in members { assertGone(member) }
    }

    @Test func terminateForeignLeavesUnrelatedProcessesAlone() async throws {
        let child = try await sh("sleep 5")
        let outcome = await ProcessReaper.terminateForeign(pid: child.pid, grace: .seconds(1)) { argv in
            argv.first?.hasSuffix("haproxy") == true
        }
        #expect(outcome == .notMatching)
        #expect(child.status == nil)
        let stopped = await ProcessReaper.terminateForeign(pid: child.pid, grace: .seconds(1)) { argv in
            argv.first == "/bin/sh"
        }
        #expect(stopped == .stopped)
        #expect(await child.wait(timeout: .seconds(5)) == .signaled(signal: SIGTERM))
        assertGone(child.pid)
        #expect(await ProcessReaper.terminateForeign(pid: child.pid, grace: .seconds(1)) { _ in true } == .notRunning)
    }

    @Test func commandLineAndStat() async throws {
        let child = try await sh("sleep 5")
        let argv = try #require(ProcessReaper.commandLine(pid: child.pid))
        #expect(argv == ["/bin/sh", "-c", "sleep 5"])
        #expect(ProcessReaper.stat(pid: child.pid)?.parent == getpid())
        await child.terminate()
    }

    @Test func findExecutableSearchesThePath() {
        #expect(ChildProcess.findExecutable("sh", searchPath: ["/nonexistent", "/bin"]) == "/bin/sh")
        #expect(ChildProcess.findExecutable("no-such-binary-xyz", searchPath: ["/bin", "/usr/bin"]) == nil)
        #expect(ChildProcess.findExecutable("/bin/sh", searchPath: []) == "/bin/sh")
    }
}
