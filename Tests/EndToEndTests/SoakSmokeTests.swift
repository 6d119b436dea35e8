import Foundation
import Testing

/// The sustained-load benchmark, for ten seconds: tunnels set up, used (every byte verified) and
/// released in a loop through two s2cs with HAProxy; nothing may fail and nothing may leak.
@Suite struct SoakSmokeTests {
    @Test func tenSecondsOfTunnelsLeaveNoDescriptorThreadProcessFileOrPortBehind() async {
        let script = Harness.repoRoot.appendingPathComponent("bench/soak").path
        let output = await Harness.run("/bin/bash", [script, "--quick", "--no-build", "--bin", Harness.productsFolder.path], cwd: Harness.repoRoot)
        #expect(output.status == 0, "bench/soak --quick failed:\n\(output.stdout)\n\(output.stderr)")
        let completed = output.stdout.split(separator: "\n").first { $0.hasPrefix("sessions_completed") }
            .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        #expect(completed > 0, "\(output.stdout)")
        #expect(output.stdout.contains("sessions_failed     0"), "\(output.stdout)")
    }
}
