import Foundation
import Testing
import TestPorts
import SciStreamSystem

/// The harness itself: a command that hangs cannot hang the suite.
@Suite struct HarnessTests {
    @Test func aHungS2ucIsKilledReapedAndFailsTheTest() async throws {
        // A "server" that accepts connections (the kernel does, into the backlog) and never answers.
        let port = try PortBlock.port()
        let silent = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: port))
        defer { silent.close() }
        let address = "127.0.0.1:\(port)"
        let started = ContinuousClock.now
        var output: Harness.Output? = nil
        await withKnownIssue("the harness records the timeout as a failure") {
            output = await Harness.s2uc(["inbound_request", "--s2cs", address, "--ssl", "False"], timeout: .milliseconds(500))
        }
        #expect(ContinuousClock.now - started < .seconds(15))
        #expect(output?.status == -1)
        #expect(output?.stderr.contains("timed out after 0.5 seconds, killed") == true, "\(output?.stderr ?? "")")
        #expect(processesMentioning(address).isEmpty, "s2uc still runs")
    }

    @Test func aTimedOutScriptsBackgroundChildrenAreKilledToo() async throws {
        // The script waits on a background child; on SIGTERM bash dies and, without the group's
        // signal, the child would be left running (orphaned to init).
        let folder = Harness.temporaryFolder("watchdog")
        defer { try? FileManager.default.removeItem(at: folder) }
        let pidFile = folder.appendingPathComponent("child.pid").path
        await withKnownIssue("the harness records the timeout as a failure") {
            _ = await Harness.run("/bin/bash", ["-c", "sleep 300 & echo $! >\(pidFile); wait"], timeout: .milliseconds(500))
        }
        let text = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let child = try #require(Int32(text))
        let deadline = ContinuousClock.now + .seconds(5)
        while processExists(child) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!processExists(child), "the script's background child \(child) still runs")
        if processExists(child) { kill(child, SIGKILL) }
    }

    @Test func aCommandThatFinishesInTimeRecordsNothing() async {
        let output = await Harness.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], timeout: .seconds(30))
        #expect(output.status == 3 && output.stdout == "out\n" && output.stderr == "err\n")
    }
}
