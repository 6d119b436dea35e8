import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// docs/tutorial.md in the Vagrantfile's four virtual machines, under libvirt with QEMU's software
/// emulation (no KVM needed): s2uc/s2cs built once on the host (scripts/build-static), a box made
/// from Debian packages (scripts/make-box, cached), libvirtd started for the test when no service
/// manager runs it (scripts/libvirt-host). In the machines, the tutorial's commands for HAProxy and
/// Stunnel (SCISTREAM_VAGRANT_TYPES): s2cs on both gateways, the inbound and outbound requests,
/// iperf3 from the consumer through its gateway, the captures showing the application's bytes
/// cross the gateways' link only encrypted, release. Then everything is destroyed, and the host
/// has no VM, network, volume, pool, daemon, iptables chain or changed sysctl left from the test.
///
/// It runs only with SCISTREAM_VAGRANT_TESTS=1, which .ci/run sets (as root, with the packages
/// .ci/run installs and about 10 GB of free memory): it takes about ten minutes with the box made,
/// twenty on a fresh machine.
@Suite(.serialized) struct VagrantTutorialTests {
    static let environment = ProcessInfo.processInfo.environment
    static let enabled = environment["SCISTREAM_VAGRANT_TESTS"] == "1"
    static let types = (environment["SCISTREAM_VAGRANT_TYPES"] ?? "Haproxy,Stunnel").split(separator: ",").map(String.init)
    /// The box, and VAGRANT_HOME with the box added, are kept here between runs (libvirt's QEMU
    /// user must be able to read the box's kernel: not under /root).
    static let cache = URL(fileURLWithPath: environment["SCISTREAM_VAGRANT_CACHE"] ?? "/var/cache/scistream-vagrant")
    static let hosts = ["producer", "producers2", "consumers2", "consumer"]
    /// Four 1 GiB machines under software emulation take about 9 GB of host memory.
    static let memoryNeeded: Int = 9 << 30

    @Test(.enabled(if: enabled, "the tutorial in four VMs runs only with SCISTREAM_VAGRANT_TESTS=1"), .timeLimit(.minutes(75)))
    func theTutorialInFourVirtualMachines() async throws {
        try await Self.preflight()
        let work = URL(fileURLWithPath: "/var/tmp/scistream-vagrant-test.\(getpid())")
        try? FileManager.default.removeItem(at: work)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let machines = Machines(work: work)
        let before = HostState.now()

        // Built on the host, before any VM exists: the binaries, then the box.
        // The debug configuration in ContainerTests' scratch folder (scripts/build-image --debug builds
        // the same way): whichever suite runs second finds the binaries made; the VMs' s2cs only
        // sets up sessions, and their throughput is the emulated CPUs' anyway.
        let built = await Self.step("scripts/build-static --debug",
                                    [Self.script("build-static"), "--debug", "--scratch", Harness.repoRoot.appendingPathComponent(".build-image").path],
                                    timeout: .seconds(45 * 60))
        try #require(built.status == 0, "scripts/build-static failed:\n\(built.tail)")
        try await machines.ensureBox()

        var failure: (any Error)? = nil
        let started = await Self.step("scripts/libvirt-host start", [Self.script("libvirt-host"), "start", "--state", machines.hostState.path], timeout: .seconds(180))
        if started.status == 0 {
            do {
                try await machines.up()
                for type in Self.types {
                    var pass = try TutorialInMachines(type: type, machines: machines)
                    try await pass.run()
                }
            } catch {
                failure = error
            }
        } else {
            Issue.record("scripts/libvirt-host start failed (is libvirt-daemon-system installed, and may libvirtd run here?):\n\(started.tail)")
        }

        // Every path ends here: the machines go, then whatever libvirt made, then the daemons.
        await machines.destroy()
        let stopped = await Self.step("scripts/libvirt-host stop", [Self.script("libvirt-host"), "stop", "--state", machines.hostState.path], timeout: .seconds(300))
        #expect(stopped.status == 0, "scripts/libvirt-host stop left something:\n\(stopped.tail)")
        let after = HostState.now()
        #expect(after.processes.subtracting(before.processes).isEmpty, "processes left: \(after.processes.subtracting(before.processes).sorted())")
        #expect(after.bridges == before.bridges, "bridges before \(before.bridges.sorted()), after \(after.bridges.sorted())")
        #expect(after.chains == before.chains, "iptables chains before \(before.chains.sorted()), after \(after.chains.sorted())")
        #expect(after.sysctls == before.sysctls, "sysctls before \(before.sysctls), after \(after.sysctls)")
        if failure == nil && stopped.status == 0 { try? FileManager.default.removeItem(at: work) }
        if let failure { throw failure }
    }

    /// What the test needs of the host, checked before anything is started: a clear error instead
    /// of a hang later.
    static func preflight() async throws {
        try #require(getuid() == 0, "the Vagrant tutorial test runs as root (libvirtd, iptables, the box's file ownership)")
        let tools = ["vagrant", "virsh", "libvirtd", "virtlogd", "dnsmasq", "qemu-system-x86_64", "qemu-img", "debootstrap", "mkfs.ext4", "rsync", "ssh", "iptables"]
        let missing = await Harness.run("/bin/bash", ["-c", "for t in \(tools.joined(separator: " ")); do command -v $t >/dev/null || echo $t; done"])
        try #require(missing.stdout.isEmpty, "missing on this host: \(missing.lines.joined(separator: ", ")): scripts/install-deps vm (the vm group of scripts/packages; .ci/run does)")
        let plugins = await Harness.run("/bin/bash", ["-c", "vagrant plugin list --no-color"], environment: ["PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "VAGRANT_HOME": cache.appendingPathComponent("vagrant-home").path, "VAGRANT_CHECKPOINT_DISABLE": "1"], timeout: .seconds(120))
        try #require(plugins.stdout.contains("vagrant-libvirt"), "the vagrant-libvirt plugin is not installed (apt-get install vagrant-libvirt): \(plugins.stdout) \(plugins.stderr)")
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let available = meminfo.split(separator: "\n").first { $0.hasPrefix("MemAvailable:") }
            .flatMap { Int($0.split(separator: " ")[1]) }.map { $0 << 10 } ?? 0
        try #require(available >= memoryNeeded, "only \(available >> 20) MiB of memory available: four VMs under software emulation need about \(memoryNeeded >> 20) MiB")
    }

    static func script(_ name: String) -> String { Harness.repoRoot.appendingPathComponent("scripts/\(name)").path }

    /// Runs a host command with the test's environment; timeouts end it and what it started.
    static func step(_ what: String, _ command: [String], environment: [String: String] = [:], timeout: Duration) async -> Harness.Output {
        var env = ProcessInfo.processInfo.environment
        env.merge(environment) { _, new in new }
        let started = ContinuousClock.now
        // timeout(1) signals the whole process group: vagrant's and ssh's children go too.
        let output = await Harness.run("/usr/bin/timeout", ["-k", "30", "\(timeout.components.seconds)"] + command,
                                       cwd: Harness.repoRoot, environment: env, timeout: timeout + .seconds(60))
        print("\(what): exit \(output.status) after \(ContinuousClock.now - started)")
        return output
    }
}

extension Harness.Output {
    /// The end of what a long command printed, for failure messages.
    var tail: String { "\(stdout.suffix(2000))\n\(stderr.prefix(1500))\(stderr.count > 3000 ? "\n...\n" : "")\(stderr.dropFirst(1500).suffix(1500))" }
}

/// The host's forwarding sysctls, which a container engine or libvirt turns on when it starts a
/// network of its own (the suite must leave them as it found them).
func forwardingSysctls() -> [String: String] {
    var sysctls: [String: String] = [:]
    for name in ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"] {
        sysctls[name] = (try? String(contentsOfFile: "/proc/sys/\(name)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    return sysctls
}

/// What the test checks is the same after it as before it: the processes of the virtualisation
/// stack, the bridges, the LIBVIRT_ iptables chains, the forwarding sysctls.
struct HostState {
    var processes: Set<String> = []
    var bridges: Set<String> = []
    var chains: Set<String> = []
    var sysctls: [String: String] = [:]

    static func now() -> HostState {
        var state = HostState()
        // libvirt's: its daemons, its QEMU guests, the dnsmasq of its networks, its bridges (virbrN).
        let names: Set<String> = ["libvirtd", "virtlogd", "qemu-system-x86", "dnsmasq"]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where Int32(entry) != nil {
            guard let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
                  names.contains(comm), processExists(Int32(entry)!) else { continue }
            let commandLine = (try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8)) ?? ""
            if comm != "dnsmasq" || commandLine.contains("libvirt") { state.processes.insert("\(comm) \(entry)") }
        }
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/net")) ?? [] where entry.hasPrefix("virbr") {
            state.bridges.insert(entry)
        }
        for command in ["iptables", "ip6tables"] {
            for table in ["filter", "nat", "mangle"] {
                let listed = Harness.runSync("/bin/bash", ["-c", "\(command) -w 10 -t \(table) -S 2>/dev/null | awk '$1 == \"-N\" && $2 ~ /^LIBVIRT_/ { print $2 }'"])
                for chain in listed.lines { state.chains.insert("\(command) \(table) \(chain)") }
            }
        }
        state.sysctls = forwardingSysctls()
        return state
    }
}

/// The four machines: Vagrant with the test's own state folder, the cached box, QEMU's software
/// emulation (SCISTREAM_LIBVIRT_DRIVER overrides), and plain ssh into them (faster than `vagrant ssh`).
final class Machines: @unchecked Sendable {  // used by one test at a time
    let work: URL
    let hostState: URL
    let sshConfig: URL
    var boxName = ""

    init(work: URL) {
        self.work = work
        hostState = work.appendingPathComponent("libvirt-host")
        sshConfig = work.appendingPathComponent("ssh-config")
    }

    var environment: [String: String] {
        [
            "VAGRANT_HOME": VagrantTutorialTests.cache.appendingPathComponent("vagrant-home").path,
            "VAGRANT_DOTFILE_PATH": work.appendingPathComponent("vagrant").path,
            "VAGRANT_DEFAULT_PROVIDER": "libvirt",
            "VAGRANT_CHECKPOINT_DISABLE": "1",
            "LIBVIRT_DEFAULT_URI": "qemu:///system",
            "SCISTREAM_BOX": boxName,
            "SCISTREAM_LIBVIRT_DRIVER": VagrantTutorialTests.environment["SCISTREAM_LIBVIRT_DRIVER"] ?? "qemu",
        ]
    }

    func vagrant(_ arguments: [String], timeout: Duration) async -> Harness.Output {
        await VagrantTutorialTests.step("vagrant \(arguments.first ?? "")", ["vagrant"] + arguments + ["--no-color"], environment: environment, timeout: timeout)
    }

    /// The box of this version of scripts/make-box: made once, then reused.
    func ensureBox() async throws {
        let hash = await Harness.run("/bin/bash", ["-c", "sha256sum \(VagrantTutorialTests.script("make-box")) | cut -c1-12"])
        boxName = "scistream/bookworm-\(hash.stdout.trimmingCharacters(in: .whitespacesAndNewlines))"
        try FileManager.default.createDirectory(at: VagrantTutorialTests.cache, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        let listed = await vagrant(["box", "list"], timeout: .seconds(120))
        if listed.stdout.contains("\(boxName) ") { return }
        let file = VagrantTutorialTests.cache.appendingPathComponent(boxName.replacingOccurrences(of: "/", with: "-") + ".box")
        if !FileManager.default.fileExists(atPath: file.path) {
            let made = await VagrantTutorialTests.step("scripts/make-box", [VagrantTutorialTests.script("make-box"), "--output", file.path], timeout: .seconds(25 * 60))
            try #require(made.status == 0, "scripts/make-box failed:\n\(made.tail)")
        }
        let added = await vagrant(["box", "add", "--force", "--name", boxName, file.path], timeout: .seconds(10 * 60))
        try #require(added.status == 0, "vagrant box add failed:\n\(added.tail)")
    }

    func up() async throws {
        let up = await vagrant(["up", "--provider", "libvirt"], timeout: .seconds(30 * 60))
        try #require(up.status == 0, "vagrant up failed:\n\(up.tail)")
        let config = await vagrant(["ssh-config"], timeout: .seconds(180))
        try #require(config.status == 0 && config.stdout.contains("Host consumer"), "vagrant ssh-config failed:\n\(config.tail)")
        try config.stdout.write(to: sshConfig, atomically: true, encoding: .utf8)
    }

    func destroy() async {
        guard FileManager.default.fileExists(atPath: work.appendingPathComponent("vagrant").path) else { return }
        let destroyed = await vagrant(["destroy", "--force"], timeout: .seconds(10 * 60))
        #expect(destroyed.status == 0, "vagrant destroy failed (scripts/libvirt-host stop removes what is left):\n\(destroyed.tail)")
    }

    /// `command` run by the vagrant user on `host`, in its home folder.
    func ssh(_ host: String, _ command: String, input: URL? = nil, timeout: Duration = .seconds(180)) async -> Harness.Output {
        await Harness.run("/usr/bin/ssh", ["-F", sshConfig.path, "-o", "ConnectTimeout=60", "-o", "ServerAliveInterval=15",
                                           "-o", "ServerAliveCountMax=4", "-o", "BatchMode=yes", host, "cd ~ && \(command)"],
                          input: input, timeout: timeout)
    }

    /// A file of `host`'s home folder, copied to the host machine unchanged (binary).
    func fetch(_ host: String, _ file: String) async throws -> URL {
        let local = work.appendingPathComponent("\(host)-\(file)")
        let copied = await Harness.run("/bin/bash", ["-c", "ssh -F \(sshConfig.path) -o BatchMode=yes \(host) 'cat \(file)' > \(local.path)"], timeout: .seconds(180))
        try #require(copied.status == 0, "could not copy \(host):\(file): \(copied.stderr)")
        return local
    }
}

/// One pass of the tutorial in the machines for one data server type: each of its commands
/// (Tutorial, which DocsTests keeps equal to docs/tutorial.md) run on the machine it names, as the
/// tutorial's Vagrant instructions say (`scripts/testbed exec HOST` dropped, tcpdump with sudo,
/// `scripts/testbed cp` through the host), outputs compared where the tutorial shows them exactly.
struct TutorialInMachines {
    let type: String
    let machines: Machines
    let document: TutorialDocument
    var uid = "<uid>"

    init(type: String, machines: Machines) throws {
        self.type = type
        self.machines = machines
        document = try TutorialDocument.load()
    }

    /// The machine and the command line of a tutorial step (`scripts/testbed exec HOST COMMAND`).
    func inMachine(_ template: String) -> (host: String, command: String) {
        let rendered = template.replacingOccurrences(of: "--type=Haproxy", with: "--type=\(type)").replacingOccurrences(of: "<uid>", with: uid)
        let words = rendered.split(separator: " ", maxSplits: 3).map(String.init)
        precondition(words.count == 4 && words[0...1] == ["scripts/testbed", "exec"], "not a command on one host: \(template)")
        let command = words[3]
        return (words[2], command.hasPrefix("tcpdump ") ? "sudo \(command)" : command)
    }

    func documentedOutput(_ template: String) -> String? {
        document.commands.first { $0.line == template }?.output
    }

    @discardableResult
    func run(_ template: String, timeout: Duration = .seconds(180), sourceLocation: SourceLocation = #_sourceLocation) async -> Harness.Output {
        let (host, command) = inMachine(template)
        let output = await machines.ssh(host, command, timeout: timeout)
        if let expected = documentedOutput(template) {
            let shown = output.stdout.replacing(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/, with: "<uid>")
            #expect(shown == expected, "\(host): '\(command)' printed what the tutorial does not show (stderr: \(output.stderr))", sourceLocation: sourceLocation)
        }
        return output
    }

    enum Ready {
        case prints(String)
        case listens(Int)
    }

    /// A step that keeps running (a terminal of its own in the tutorial): started detached in its
    /// machine, its output in NAME.out and NAME.err, its pid in NAME.pid; returns once ready.
    func start(_ template: String, as name: String, ready: Ready, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Started {
        var (host, command) = inMachine(template)
        precondition(!command.contains("'"))
        var sudo = ""
        if command.hasPrefix("sudo ") { sudo = "sudo "; command.removeFirst(5) }
        let launch = "rm -f \(name).pid && (setsid nohup \(sudo)sh -c 'echo $$ > \(name).pid; exec \(command)' > \(name).out 2> \(name).err < /dev/null &)"
        let condition = switch ready {
        case .prints(let text): "grep -qF '\(text)' \(name).out \(name).err"
        case .listens(let port): "ss -Htln 'sport = :\(port)' | grep -q ."
        }
        let wait = "timeout 90 sh -c 'until [ -s \(name).pid ] && \(condition.replacingOccurrences(of: "'", with: "'\\''")); do sleep 0.5; done' || { echo not ready; cat \(name).out \(name).err; exit 1; }"
        let output = await machines.ssh(host, "\(launch) && \(wait) && cat \(name).pid", timeout: .seconds(180))
        let started = Started(host: host, name: name, pid: Int(output.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, machines: machines)
        try #require(output.status == 0 && started.pid > 0, "\(host): '\(command)' did not start: \(output.stdout) \(output.stderr)", sourceLocation: sourceLocation)
        return started
    }

    struct Started {
        let host: String
        let name: String
        let pid: Int
        let machines: Machines

        /// Ctrl-C, as in the tutorial; true once it has exited (within 30 s).
        @discardableResult
        func stop(_ signal: String = "INT") async -> Bool {
            let stopped = await machines.ssh(host, "sudo kill -\(signal) \(pid) 2>/dev/null; timeout 30 sh -c 'while [ -e /proc/\(pid) ]; do sleep 0.5; done'")
            return stopped.status == 0
        }

        func waitForExit(seconds: Int) async -> Bool {
            await machines.ssh(host, "timeout \(seconds) sh -c 'while [ -e /proc/\(pid) ]; do sleep 0.5; done'").status == 0
        }

        func output() async -> String { await machines.ssh(host, "cat \(name).out \(name).err").stdout }
    }

    /// `scripts/testbed cp A:FILE B:FILE`, through the host machine.
    func copy(_ template: String) async throws {
        let words = template.split(separator: " ").map(String.init)
        let (from, to) = (words[2].split(separator: ":").map(String.init), words[3].split(separator: ":").map(String.init))
        let local = try await machines.fetch(from[0], from[1])
        let uploaded = await machines.ssh(to[0], "cat > \(to[1])", input: local)
        #expect(uploaded.status == 0, "\(template): \(uploaded.stderr)")
    }

    mutating func run() async throws {
        print("the tutorial in the machines with --type=\(type)")
        for step in [Tutorial.producers2Certificate, Tutorial.consumers2Certificate] {
            #expect(await run(step).status == 0, "\(step)")
        }
        for step in [Tutorial.producerTrustsProducers2, Tutorial.consumerTrustsConsumers2] {
            try await copy(step)
        }

        let producers2 = try await start(Tutorial.producers2S2CS, as: "s2cs", ready: .prints("s2cs listening on 0.0.0.0:5007"))
        var consumers2: Started? = nil
        var iperfServer: Started? = nil
        var captures: [Started] = []
        do {
            let inbound = await run(Tutorial.inbound)
            let producers2Log = inbound.status == 0 ? "" : await producers2.output()
            try #require(inbound.status == 0, "inbound_request failed: \(inbound.stderr)\n\(producers2Log)")
            let fields = inbound.lines.dropFirst().first?.split(separator: " ").map(String.init) ?? []
            try #require(fields.count == 4, "\(inbound.stdout)")
            uid = fields[0]

            consumers2 = try await start(Tutorial.consumers2S2CS, as: "s2cs", ready: .prints("s2cs listening on 0.0.0.0:5007"))
            let outbound = await run(Tutorial.outbound)
            let consumers2Log = outbound.status == 0 ? "" : await consumers2!.output()
            try #require(outbound.status == 0, "outbound_request failed: \(outbound.stderr)\n\(consumers2Log)")

            // iperf3 from the consumer, through its gateway and the tunnel, to the producer.
            iperfServer = try await start(Tutorial.iperfServer, as: "iperf3", ready: .listens(5001))
            let client = await run(Tutorial.iperfClient, timeout: .seconds(240))
            #expect(client.status == 0, "iperf3 -c failed: \(client.stdout)\n\(client.stderr)")
            let received = TestbedSuites.TestbedTutorialTests.receivedBytes(client.stdout)
            #expect(received > Double(1 << 20), "iperf3 reports \(received) bytes received: \(client.stdout)")
            print("\(type): iperf3 through the tunnel between the VMs: \(TestbedSuites.TestbedTutorialTests.receiverBitrate(client.stdout) / 1e6) Mbit/s")

            let listening = await run(Tutorial.listening)
            #expect(listening.stdout.contains("0.0.0.0:5007"), "\(listening.stdout)")
            let proxyLine = listening.lines.first { $0.contains("192.168.30.10:5100") }
            #expect(proxyLine.map { ["haproxy", "nginx", "stunnel"].contains(where: $0.contains) } == true, "no proxy listens on 192.168.30.10:5100: \(listening.stdout)")

            // The application's bytes: in the clear on the consumer's link, not between the gateways.
            captures.append(try await start(Tutorial.captureBetweenGateways, as: "gateways-capture", ready: .prints("listening on eth1")))
            captures.append(try await start(Tutorial.captureConsumerLAN, as: "lan-capture", ready: .prints("listening on eth2")))
            let pattern = await run(Tutorial.patternClient, timeout: .seconds(240))
            #expect(pattern.status == 0, "iperf3 --repeating-payload failed: \(pattern.stdout)\n\(pattern.stderr)")
            for capture in captures where !(await capture.waitForExit(seconds: 15)) {
                await capture.stop()  // fewer than 300 packets: Ctrl-C
            }
            captures = []
            let onLAN = await run(Tutorial.patternOnConsumerLAN)
            #expect((Int(onLAN.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0, "the capture on the consumer's link should show the pattern: \(onLAN.stdout) \(onLAN.stderr)")
            let betweenGateways = await run(Tutorial.patternBetweenGateways)
            #expect(betweenGateways.stdout == "0\n", "plaintext between the gateways: \(betweenGateways.stdout)")

            let gateways = try PacketCapture(contentsOf: try await machines.fetch("consumers2", "gateways.pcap"))
            let lan = try PacketCapture(contentsOf: try await machines.fetch("consumers2", "consumer-lan.pcap"))
            let crossed = gateways.payloadBytes(between: "192.168.20.11", and: "192.168.10.11")
            #expect(crossed > 64 << 10, "only \(crossed) payload bytes crossed the gateways' link in the capture")
            #expect(!gateways.payloadsContain(Tutorial.payloadPattern), "the application's payload crossed the gateways' link in the clear")
            #expect(lan.payloadsContain(Tutorial.payloadPattern), "the capture on the consumer's link did not see the pattern: the check would prove nothing")

            for step in [Tutorial.releaseConsumerSide, Tutorial.releaseProducerSide] {
                let release = await run(step)
                #expect(release.status == 0 && release.stdout == "Release completed\n", "\(step): \(release.stdout) \(release.stderr)")
            }
            let after = await run(Tutorial.listening)
            #expect(!after.stdout.contains(":5100"), "still listening after release: \(after.stdout)")
        } catch {
            for started in captures + [iperfServer, consumers2, producers2].compactMap({ $0 }) { await started.stop("TERM") }
            throw error
        }

        // Ctrl-C in each s2cs terminal: it stops, with no proxy left on its gateway.
        for daemon in [consumers2, producers2].compactMap({ $0 }) {
            let stopped = await daemon.stop()
            let log = stopped ? "" : await daemon.output()
            #expect(stopped, "s2cs on \(daemon.host) did not stop on Ctrl-C: \(log)")
            let proxies = await machines.ssh(daemon.host, "ps -eo comm= | grep -E '^(haproxy|nginx|stunnel4?)$' || true")
            #expect(proxies.stdout.isEmpty, "proxies left on \(daemon.host) after s2cs stopped: \(proxies.stdout)")
        }
        if let iperfServer {
            await iperfServer.stop()
            let served = await iperfServer.output()
            #expect(served.contains("Accepted connection from 192.168.10.11"), "the producer should see only its gateway: \(served)")
        }
        for host in ["producer", "consumers2"] {
            let removed = await machines.ssh(host, "sudo rm -f gateways.pcap consumer-lan.pcap")
            #expect(removed.status == 0, "\(host): could not remove the captures: \(removed.stderr)")
        }
    }
}
