import Foundation
import Testing
@testable import SciStreamServer
import SciStreamWire

/// s2cs checks at start that its descriptor and process limits can hold every session of its
/// --port-range (each port may be a session with its own proxy), and says which limit and how to
/// raise it when they cannot. Run against the real binary under prlimit(1).
@Suite struct ResourceLimitTests {
    static let range = "20000-21999"

    @Test func aHardDescriptorLimitTooLowForTheRangeIsAStartupErrorNamingIt() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "prlimit (util-linux) is needed")
        let output = await Harness.run("/usr/bin/prlimit", ["--nofile=64:64", Harness.s2cs, "--port", "0", "--type", "Nginx",
                                                            "--port-range", Self.range, "--ssl=False"])
        #expect(output.status == 1, "exit \(output.status): \(output.stderr)")
        #expect(output.stdout.isEmpty, "\(output.stdout)")
        #expect(output.stderr == "Error: --port-range 20000-21999 holds up to 2000 sessions, which need about 8256 open files, and s2cs may open only 64 (RLIMIT_NOFILE, hard limit): raise it (systemd: LimitNOFILE=8256 or more; a shell: ulimit -n 8256, its hard limit raised by root or in /etc/security/limits.conf; a container: the runtime's nofile ulimit), or give a smaller --port-range\n", "\(output.stderr)")
    }

    /// A low soft limit under a high enough hard one is raised: s2cs goes on to its next start-up
    /// step (here the certificate, which is missing, so that nothing is left running).
    @Test func aLowSoftDescriptorLimitIsRaisedAndStartGoesOn() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "prlimit (util-linux) is needed")
        let folder = Harness.temporaryFolder("limits")
        defer { try? FileManager.default.removeItem(at: folder) }
        let missing = folder.appendingPathComponent("missing.crt").path
        let output = await Harness.run("/usr/bin/prlimit", ["--nofile=64:16384", Harness.s2cs, "--port", "0", "--type", "Nginx",
                                                            "--port-range", Self.range, "--server_crt", missing, "--server_key", missing])
        #expect(output.status == 1, "exit \(output.status): \(output.stderr)")
        #expect(!output.stderr.contains("RLIMIT_NOFILE"), "\(output.stderr)")
        #expect(output.stderr.contains("missing.crt"), "the next step's error: \(output.stderr)")
        // The same range under the same hard limit fails when the hard limit is too low for it.
        let small = await Harness.run("/usr/bin/prlimit", ["--nofile=64:8255", Harness.s2cs, "--port", "0", "--type", "Nginx",
                                                           "--port-range", Self.range, "--server_crt", missing, "--server_key", missing])
        #expect(small.status == 1 && small.stderr.contains("may open only 8255 (RLIMIT_NOFILE, hard limit)"), "\(small.stderr)")
    }

    /// The process limit, per proxy type (root is not limited by it, so this is the check itself).
    @Test func theProcessLimitIsWordedPerType() throws {
        let range = try PortRange.parse("5100-6099")
        let haproxy = ResourceNeeds(portRange: range, type: .haproxy, processors: 2)
        #expect(haproxy.sessions == 1000 && haproxy.tasks == 64 + 3000 && haproxy.descriptors == 256 + 4000)
        #expect(LimitCheck.tasks(need: haproxy, limit: ResourceLimit(soft: 1000, hard: 5000), range: range, type: .haproxy, isRoot: false) == .raise(to: 3064))
        #expect(LimitCheck.tasks(need: haproxy, limit: ResourceLimit(soft: 1000, hard: 1000), range: range, type: .haproxy, isRoot: true) == .enough)
        #expect(LimitCheck.tasks(need: haproxy, limit: ResourceLimit(soft: nil, hard: nil), range: range, type: .haproxy, isRoot: false) == .enough)
        #expect(LimitCheck.tasks(need: haproxy, limit: ResourceLimit(soft: 1000, hard: 1000), range: range, type: .haproxy, isRoot: false)
                == .tooLow("--port-range 5100-6099 holds up to 1000 Haproxy sessions, whose proxies run about 3064 processes and threads, and this user may run only 1000 (RLIMIT_NPROC, hard limit): raise it (systemd: LimitNPROC= and TasksMax= of 3064 or more; a shell: ulimit -u 3064, its hard limit raised by root or in /etc/security/limits.conf), or give a smaller --port-range"))
        let wide = ResourceNeeds(portRange: try PortRange.parse("10000-60000"), type: .mock, processors: 2)
        #expect(wide.descriptors == 256 && wide.tasks == 64, "Mock starts nothing: its needs do not grow with the range")
        #expect(ResourceNeeds(portRange: range, type: .mock, processors: 2).tasks == 64)
    }
}
