import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The data plane's share of issue 10, through the real binaries: proxy binaries found only where
/// root alone can write, and a target nginx would take for a socket file refused up front.
@Suite struct DataPlaneHardeningTests {
    @Test func aTargetNamedUnixIsABadRemoteIP() async {
        let output = await Harness.s2uc(["inbound_request", "--remote_ip", "unix", "--receiver_ports", "5000", "--ssl", "False"])
        #expect(output.status == 64, "exit \(output.status): \(output.stderr)")
        #expect(output.stderr.hasPrefix("Error: bad --remote_ip: 'unix' is not a valid host: a proxy would read 'unix:' as a local socket path"),
                "\(output.stderr)")
        let outbound = await Harness.s2uc(["outbound_request", "--ssl", "False", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3", "unix:5000"])
        #expect(outbound.status == 64, "exit \(outbound.status): \(outbound.stderr)")
        #expect(outbound.stderr.contains("'unix' is not a valid host"), "\(outbound.stderr)")
    }

    /// In a mount namespace of its own, /usr/sbin/haproxy is hidden (a bind mount of /dev/null), and a
    /// `haproxy` script waits in a world-writable directory at the head of PATH: s2cs refuses to start,
    /// names the type and the directories it searched, and never runs the planted script.
    @Test func s2csRunsNoProxyFromADirectoryOthersCanWrite() async throws {
        let folder = Harness.temporaryFolder("planted")
        defer { try? FileManager.default.removeItem(at: folder) }
        let planted = folder.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: planted, withIntermediateDirectories: true)
        chmod(planted.path, 0o777)
        let marker = folder.appendingPathComponent("ran").path
        try "#!/bin/sh\ntouch \(marker)\nsleep 30\n".write(to: planted.appendingPathComponent("haproxy"), atomically: true, encoding: .utf8)
        chmod(planted.appendingPathComponent("haproxy").path, 0o777)

        let probe = await Harness.run("/usr/bin/unshare", ["--mount", "/bin/true"])
        guard probe.status == 0 else {
            print("skipping: unshare --mount is not permitted here (\(probe.stderr))")
            try Test.cancel("unshare --mount is not permitted here")
        }
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = "\(planted.path):relative/bin:/usr/bin:/bin"
        environment["HAPROXY_CONFIG_PATH"] = folder.appendingPathComponent("sessions").path
        // Bounded: an s2cs that took the planted binary would start and serve (`timeout` ends it, 124).
        let script = "mount --bind /dev/null /usr/sbin/haproxy && exec timeout 20 \(Harness.s2cs) --port 0 --ssl False --type Haproxy"
        let output = await Harness.run("/usr/bin/unshare", ["--mount", "/bin/bash", "-c", script], environment: environment)
        #expect(output.status == 1, "exit \(output.status): \(output.stderr)")
        let lines = output.stderr.split(separator: "\n").map(String.init)
        #expect(lines.first == "Error: haproxy is not installed: install it with 'sudo apt-get install haproxy'", "\(output.stderr)")
        let searched = lines.dropFirst().first ?? ""
        #expect(searched.hasPrefix("(the Haproxy data plane runs haproxy; searched "), "\(output.stderr)")
        #expect(searched.contains("/usr/sbin") && searched.contains("/usr/bin"), "\(searched)")
        #expect(!searched.contains(planted.path) && !searched.contains("relative"), "\(searched)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the planted haproxy ran")
        #expect(!output.stdout.contains("s2cs listening on"))
    }
}
