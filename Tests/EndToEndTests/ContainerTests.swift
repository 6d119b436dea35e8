import Foundation
import Testing
import TestPorts
#if canImport(Glibc)
import Glibc
#endif

/// The container image (Containerfile, scripts/build-image) as a facility runs it: the base image
/// made locally (no registry here), the image built with static binaries, two s2cs in two containers
/// on the host network, the seeds' tutorial 8.8 command for the inbound request, iperf3 from the
/// image through the tunnel, release, and nothing left. Needs podman and runc (with
/// `default_ulimits = []` in /etc/containers/containers.conf; .ci/run sets it up), debootstrap and
/// libcurl4-openssl-dev, root.
@Suite(.serialized) struct ContainerTests {
    static let podman = "/usr/bin/podman"
    static let baseImage = "docker.io/library/debian:bookworm-slim"

    @Test func twoGatewaysInContainersCarryIperf3AndLeaveNothingBehind() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.podman),
                     "podman is not installed: scripts/install-deps test (the test group of scripts/packages)")
        let clock = ContinuousClock()
        let began = clock.now
        // Every container here runs on the host network or on none: a container on podman's
        // default bridge network makes netavark turn on the host's IP forwarding, and leave it on.
        let sysctlsBefore = forwardingSysctls()
        var phases: [String] = []
        func lap(_ name: String, since start: ContinuousClock.Instant) {
            phases.append("\(name) \(String(format: "%.1f", Double((clock.now - start).components.seconds) + Double((clock.now - start).components.attoseconds) / 1e18)) s")
        }

        // 1. The base image, made from Debian packages when it is not there yet.
        var start = clock.now
        if await Podman.run(["image", "exists", Self.baseImage]).status != 0 {
            let made = await Harness.run("/bin/bash", [Harness.repoRoot.appendingPathComponent("scripts/make-base-image").path], timeout: .seconds(900))
            try #require(made.status == 0, "scripts/make-base-image failed: \(made.stderr)")
            lap("base image (debootstrap + import)", since: start)
        } else {
            lap("base image (present)", since: start)
        }

        // 2. The image, with binaries built on this host (debug: quicker to compile, same linking).
        let suffix = UUID().uuidString.prefix(8).lowercased()
        let tag = "localhost/scistream-test:\(suffix)"
        let prefix = "scistream-test-\(suffix)"
        let names = ["producer", "consumer", "iperf"].map { "\(prefix)-\($0)" }
        let folder = Harness.temporaryFolder("container")
        defer {
            // Teardown that cannot be skipped: containers (and their anonymous volumes), the image, files.
            _ = Harness.runSync(Self.podman, ["rm", "--force", "--volumes", "--time", "2"] + names)
            _ = Harness.runSync(Self.podman, ["rmi", "--force", tag])
            try? FileManager.default.removeItem(at: folder)
        }
        start = clock.now
        let built = await Harness.run("/bin/bash", [Harness.repoRoot.appendingPathComponent("scripts/build-image").path,
                                                    "--debug", "--tag", tag], cwd: Harness.repoRoot, timeout: .seconds(1200))
        try #require(built.status == 0, "scripts/build-image failed:\n\(built.stderr.suffix(3000))")
        #expect(built.lines.last == tag, "build-image prints the image name last: \(built.stdout)")
        lap("scripts/build-image --debug", since: start)

        let inside = await Podman.run(["run", "--rm", "--net=none", "--entrypoint=/bin/sh", tag, "-c",
                                       "id -u; for p in s2cs s2uc haproxy nginx stunnel iperf3; do command -v $p; done; test -e /usr/lib/nginx/modules/ngx_stream_module.so && echo stream; test -e /opt/swift || echo no-toolchain"])
        #expect(inside.status == 0, "\(inside.stderr)")
        #expect(inside.lines == ["10001", "/usr/local/bin/s2cs", "/usr/local/bin/s2uc", "/usr/sbin/haproxy", "/usr/sbin/nginx",
                                 "/usr/bin/stunnel", "/usr/bin/iperf3", "stream", "no-toolchain"], "\(inside.stdout)")

        // 3. The certificate folder, mounted at /scistream as in the tutorial: the key must be readable
        //    by the image's user (uid 10001), and by nobody else.
        let certs = folder.appendingPathComponent("server1")
        try FileManager.default.createDirectory(at: certs, withIntermediateDirectories: true)
        for (source, name) in [(Harness.certificates.crt, "server.crt"), (Harness.certificates.key, "server.key")] {
            let path = certs.appendingPathComponent(name).path
            try FileManager.default.copyItem(atPath: source, toPath: path)
            #expect(chown(path, 10001, 10001) == 0)
        }
        #expect(chmod(certs.appendingPathComponent("server.key").path, 0o600) == 0)

        // 4. Two gateways (HAProxy on the producer side, Nginx on the consumer side) and the producer application.
        start = clock.now
        let producerPorts = try PortBlock.reserve(10), consumerPorts = try PortBlock.reserve(2)  // the per-client quota is half the range
        let producer = try await Podman.startGateway(name: names[0], image: tag, certificates: certs,
                                                     arguments: ["--port", "0", "--bind", "127.0.0.1", "--listener-ip", "127.0.0.1",
                                                                 "--type", "Haproxy", "--port-range", "\(producerPorts)", "--verbose"])
        let consumer = try await Podman.startGateway(name: names[1], image: tag, certificates: certs,
                                                     arguments: ["--port", "0", "--bind", "127.0.0.1", "--listener-ip", "127.0.0.1",
                                                                 "--type", "Nginx", "--port-range", "\(consumerPorts)", "--verbose"])
        let iperfPort = try PortBlock.port()
        let server = try Podman.Foreground(name: names[2], arguments: ["--entrypoint=iperf3", tag, "-s", "-p", "\(iperfPort)", "-B", "127.0.0.1"])
        try await waitUntil("iperf3 -s listens on \(iperfPort)") { tcpListening(port: iperfPort) }
        lap("two s2cs and iperf3 -s started", since: start)

        // 5. The tutorial's 8.8 command, as written but for the addresses and ports of this machine.
        start = clock.now
        let inbound = await Podman.run(["run", "--rm", "--net=host", "-v", "\(certs.path):/scistream", "--entrypoint=s2uc", tag,
                                        "inbound-request", "--remote_ip", "127.0.0.1", "--s2cs", "127.0.0.1:\(producer.port)",
                                        "--receiver_ports", "\(iperfPort)", "--server_cert=/scistream/server.crt"])
        try #require(inbound.status == 0, "inbound-request: \(inbound.stdout)\n\(inbound.stderr)")
        let uid = String(inbound.lines[1].split(separator: " ")[0])
        #expect(inbound.lines[1] == "\(uid) 127.0.0.1:\(producer.port) INVALID_TOKEN PROD")
        let producerListeners = (0..<5).map { "127.0.0.1:\(producerPorts[$0])" }
        #expect(inbound.lines.last == "Listeners: [\(producerListeners.map { "'\($0)'" }.joined(separator: ", "))]", "\(inbound.stdout)")
        let outbound = await Podman.run(["run", "--rm", "--net=host", "-v", "\(certs.path):/scistream", "--entrypoint=s2uc", tag,
                                         "outbound-request", "--s2cs", "127.0.0.1:\(consumer.port)", "--receiver_ports", "\(consumerPorts[0])",
                                         "--num_conn", "1", "--server_cert=/scistream/server.crt", uid, producerListeners[0]])
        try #require(outbound.status == 0, "outbound-request: \(outbound.stdout)\n\(outbound.stderr)")
        #expect(outbound.lines.last == "Listeners: ['127.0.0.1:\(consumerPorts[0])']", "\(outbound.stdout)")
        lap("inbound + outbound requests", since: start)

        // The proxies run inside the containers, as the image's user, not root.
        let proxies = await Podman.proxies(of: names[0]) + Podman.proxies(of: names[1])
        #expect(proxies.count >= 2, "a proxy per gateway: \(proxies)")
        for pid in proxies {
            #expect(realUID(of: pid) == 10001, "proxy \(pid) runs as uid \(realUID(of: pid).map(String.init) ?? "?")")
        }

        // 6. iperf3 from the image through the tunnel.
        start = clock.now
        let client = await Podman.run(["run", "--rm", "--net=host", "--entrypoint=iperf3", tag, "-c", "127.0.0.1", "-p", "\(consumerPorts[0])", "-t", "2"])
        #expect(client.status == 0, "iperf3 -c through the tunnel: \(client.stdout)\n\(client.stderr)")
        let receiver = client.lines.first { $0.hasSuffix("receiver") } ?? ""
        #expect(receiver.contains("bits/sec") && !receiver.contains(" 0.00 Bytes"), "\(client.stdout)")
        lap("iperf3 -c -t 2 through the tunnel", since: start)

        // 7. Release on both sides; the proxies end; stopping the containers ends s2cs and removes them.
        start = clock.now
        for gateway in [producer, consumer] {
            let release = await Podman.run(["run", "--rm", "--net=host", "-v", "\(certs.path):/scistream", "--entrypoint=s2uc", tag,
                                            "release", uid, "--s2cs", "127.0.0.1:\(gateway.port)", "--server_cert=/scistream/server.crt"])
            #expect(release.status == 0 && release.lines == ["Release completed"], "\(release.stdout)\n\(release.stderr)")
        }
        try await waitUntil("the proxies exit after release") { proxies.allSatisfy { !processExists($0) } }
        let stop = await Podman.run(["stop", "--time", "10"] + names)
        #expect(stop.status == 0, "podman stop: \(stop.stderr)")
        for container in [producer.container, consumer.container, server] { try await container.waitForExit() }
        for gateway in [producer, consumer] {
            #expect(!processExists(gateway.hostPID))
            #expect(gateway.container.output.contains("s2cs stopped"), "s2cs went through its own SIGTERM path: \(gateway.container.output)")
        }
        try await waitUntil("no container of this test is left") {
            await Podman.run(["ps", "--all", "--quiet", "--filter", "name=\(prefix)"]).stdout.isEmpty
        }
        lap("release + podman stop", since: start)
        #expect(forwardingSysctls() == sysctlsBefore, "the host's forwarding sysctls changed: before \(sysctlsBefore), after \(forwardingSysctls())")
        lap("total", since: began)
        print("ContainerTests timings: " + phases.joined(separator: "; "))
    }
}

/// podman, run as a command.
enum Podman {
    static func run(_ arguments: [String]) async -> Harness.Output {
        await Harness.run(ContainerTests.podman, arguments)
    }

    /// A container run in the foreground by a `podman run` child (not `--detach`: Foundation's
    /// Process learns of a child's exit through a socket the child inherits, and the container's
    /// conmon would hold it open after a detached `podman run` exits). `podman stop` ends it.
    final class Foreground: @unchecked Sendable {  // used by one test at a time
        let process = Process()
        let name: String
        let folder: URL
        init(name: String, arguments: [String]) throws {
            self.name = name
            folder = Harness.temporaryFolder("podman")
            process.executableURL = URL(fileURLWithPath: ContainerTests.podman)
            process.arguments = ["run", "--rm", "--name", name, "--net=host"] + arguments
            for stream in ["stdout", "stderr"] {
                _ = FileManager.default.createFile(atPath: folder.appendingPathComponent(stream).path, contents: nil)
            }
            process.standardOutput = try FileHandle(forWritingTo: folder.appendingPathComponent("stdout"))
            process.standardError = try FileHandle(forWritingTo: folder.appendingPathComponent("stderr"))
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
        /// What the container printed, stdout then stderr.
        var output: String {
            ["stdout", "stderr"].map { (try? String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8)) ?? "" }.joined()
        }
        /// Waits (bounded) for `podman run` to exit once its container has ended.
        func waitForExit(seconds: Int = 20) async throws {
            try await waitUntil("podman run \(name) exits", seconds: seconds) { !process.isRunning }
        }
        deinit {
            if process.isRunning {
                _ = Harness.runSync(ContainerTests.podman, ["rm", "--force", "--volumes", "--time", "2", name])
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(at: folder)
        }
    }

    struct Gateway {
        let container: Foreground
        let port: UInt16
        let hostPID: Int32
    }

    /// Starts s2cs in a container on the host network, with `certificates` at /scistream, and reads
    /// the control port it prints.
    static func startGateway(name: String, image: String, certificates: URL, arguments: [String]) async throws -> Gateway {
        let container = try Foreground(name: name, arguments: ["-v", "\(certificates.path):/scistream", image] + arguments)
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let line = container.output.split(separator: "\n").first(where: { $0.hasPrefix("s2cs listening on ") }),
               let colon = line.lastIndex(of: ":"), let port = UInt16(line[line.index(after: colon)...]) {
                let inspect = await run(["inspect", "--format", "{{.State.Pid}}", name])
                guard let pid = Int32(inspect.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0 else {
                    throw HarnessError("podman inspect \(name): \(inspect.stdout) \(inspect.stderr)")
                }
                return Gateway(container: container, port: port, hostPID: pid)
            }
            if !container.process.isRunning { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("s2cs in \(name) did not start: \(container.output)")
    }

    /// Host pids of the proxies (haproxy, nginx, stunnel) in a container.
    static func proxies(of name: String) async -> [Int32] {
        let top = await run(["top", name, "hpid", "args"])
        return top.lines.dropFirst().compactMap { line -> Int32? in
            let fields = line.split(separator: " ", maxSplits: 1)
            guard fields.count == 2, ["haproxy", "nginx", "stunnel"].contains(where: { fields[1].contains($0) }) else { return nil }
            return Int32(fields[0])
        }
    }
}

/// The real uid of a process (the first field of `Uid:` in /proc/<pid>/status).
func realUID(of pid: Int32) -> UInt32? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { return nil }
    return line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { UInt32($0) }
}

/// Whether some socket on this host listens on this TCP port (/proc/net/tcp and tcp6, state 0A).
func tcpListening(port: UInt16) -> Bool {
    let hex = String(format: ":%04X", port)
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = procFile(file)
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            if fields.count > 3, fields[1].hasSuffix(hex), fields[3] == "0A" { return true }
        }
    }
    return false
}

/// A /proc file read to its end (its size is reported as 0, and with tens of thousands of sockets
/// /proc/net/tcp is megabytes long: read until EOF, not what stat says).
func procFile(_ path: String) -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
    defer { try? handle.close() }
    return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
}

/// Polls `condition` every 100 ms for up to `seconds`; throws naming what did not happen.
func waitUntil(_ what: String, seconds: Int = 20, _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(100))
    }
    throw HarnessError("timed out after \(seconds) s waiting until \(what)")
}
