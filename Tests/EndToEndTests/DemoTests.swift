import Foundation
import Testing
import TestPorts

/// The README's main job, scripts/demo, as a user runs it (without apt-get and the build, which
/// the test run has done): a real tunnel on loopback, iperf3 through it, release, and nothing left.
@Suite struct DemoTests {
    @Test func theDemoMovesRealBytesAndLeavesNoProcessBehind() async throws {
        let script = Harness.repoRoot.appendingPathComponent("scripts/demo").path
        let producerPorts = try PortBlock.reserve(), consumerPorts = try PortBlock.reserve()
        let output = await Harness.run("/bin/bash", [script, "--no-install", "--no-build", "--bin", Harness.productsFolder.path,
                                                     "--type", "Nginx", "--seconds", "1", "--port-ranges", "\(producerPorts),\(consumerPorts)"],
                                       cwd: Harness.repoRoot, timeout: .seconds(120))
        #expect(output.status == 0, "\(output.stdout)\n\(output.stderr)")
        #expect(output.stdout.contains("Listeners: ['127.0.0.1:\(producerPorts.lower)']"), "\(output.stdout)")
        #expect(output.stdout.components(separatedBy: "Release completed").count == 3, "both sides released: \(output.stdout)")
        let tunnel = output.stdout.split(separator: "\n").first { $0.hasPrefix("throughput through the Nginx tunnel") } ?? ""
        #expect(tunnel.contains("bits/sec"), "\(output.stdout)")
        // Nothing of the demo's is left running: its s2cs, proxies and iperf3 all name its work folder.
        let left = processesMentioning("/tmp/scistream-demo.")
        #expect(left.isEmpty, "left running: \(left)")
    }
}

/// The pids of running (non-zombie) processes whose command line mentions `fragment`.
func processesMentioning(_ fragment: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
        guard processExists(pid), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(fragment)
    }
}
