import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import TestPorts

/// Issue 22: the original SciStream (scistream-proto 1.2.1) on one gateway and this one on the other,
/// with plain TCP between them (`--data-plane-tls=False` here; the original's `HaproxySubprocess`
/// forwards plain TCP). The original's s2cs and s2uc run in a network namespace the test makes
/// (10.213.0.2, reached over a veth pair from 10.213.0.1), as a gateway of another facility would;
/// iperf3 through the session, each way round. Then every process is stopped by its pid (the
/// original's HAProxy daemons outlive their release: it leaves them as orphans) and the namespace goes.
///
/// Runs only with `SCISTREAM_ORIGINAL_VENV` naming a Python venv where the original is installed
/// (docs/compatibility.md says how): its code is not part of this project, so CI does not run it.
@Suite(.serialized) struct MixedGatewayTests {
    static let venv = ProcessInfo.processInfo.environment["SCISTREAM_ORIGINAL_VENV"]
    static let mockUID = "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"

    /// The namespace, its veth pair and what runs in it.
    final class Namespace: @unchecked Sendable {  // used by one test at a time
        let name = "scimix\(getpid() % 100_000)"
        var hostLink: String { "\(name)h" }
        let work = Harness.temporaryFolder("mixed")
        var started: [Process] = []

        func ip(_ arguments: [String]) async throws {
            let output = await Harness.run("/usr/sbin/ip", arguments)
            try #require(output.status == 0, "ip \(arguments.joined(separator: " ")): \(output.stderr)")
        }

        func make() async throws {
            try await ip(["netns", "add", name])
            try await ip(["link", "add", hostLink, "type", "veth", "peer", "name", "\(name)o"])
            try await ip(["link", "set", "\(name)o", "netns", name])
            try await ip(["addr", "add", "10.213.0.1/24", "dev", hostLink])
            try await ip(["link", "set", hostLink, "up"])
            for command in [["addr", "add", "10.213.0.2/24", "dev", "\(name)o"], ["link", "set", "\(name)o", "up"], ["link", "set", "lo", "up"]] {
                try await ip(["netns", "exec", name, "ip"] + command)
            }
        }

        /// A command in the namespace with HOME in the work folder (the original writes its configs there).
        func command(_ arguments: [String]) -> [String] {
            ["netns", "exec", name, "/usr/bin/env", "HOME=\(work.path)", "PYTHONUNBUFFERED=1"] + arguments
        }

        func run(_ arguments: [String], timeout: Duration = .seconds(60)) async -> Harness.Output {
            await Harness.run("/usr/sbin/ip", command(arguments), cwd: work, timeout: timeout)
        }

        /// Starts a long-running command in the namespace; returns once `ready` is in its output.
        func start(_ arguments: [String], ready: String) async throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
            process.arguments = command(arguments)
            process.currentDirectoryURL = work
            let log = work.appendingPathComponent("\(started.count).log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.standardOutput = try FileHandle(forWritingTo: log)
            process.standardError = process.standardOutput
            try process.run()
            started.append(process)
            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline {
                if ((try? String(contentsOf: log, encoding: .utf8)) ?? "").contains(ready) { return }
                try await Task.sleep(for: .milliseconds(100))
            }
            Issue.record("\(arguments.joined(separator: " ")) did not print '\(ready)': \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            throw HarnessError("not ready")
        }

        /// Every process in the namespace (the original's orphaned HAProxy daemons too), by pid; then
        /// the namespace, the veth pair and the work folder.
        func destroy() async {
            // SIGKILL: a child of the test runner inherits its blocked SIGTERM (Testbed.swift says more).
            for process in started where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            let pids = await Harness.run("/usr/sbin/ip", ["netns", "pids", name])
            for pid in pids.lines.compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            for process in started { process.waitUntilExit() }
            _ = await Harness.run("/usr/sbin/ip", ["netns", "del", name])
            _ = await Harness.run("/usr/sbin/ip", ["link", "del", hostLink])
            try? FileManager.default.removeItem(at: work)
        }
    }

    /// `Listeners: ['a:1', 'b:2']` (the line both s2uc print) as its entries.
    static func listeners(_ output: String) -> [String] {
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("Listeners: [") }) else { return [] }
        return line.dropFirst("Listeners: [".count).dropLast().split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "' ")) }
    }

    @Test(.enabled(if: venv != nil, "the original SciStream runs only with SCISTREAM_ORIGINAL_VENV"), .timeLimit(.minutes(5)))
    func anOriginalGatewayAndThisOneCarryASessionInPlaintextEachWayRound() async throws {
        let venv = try #require(Self.venv)
        let namespace = Namespace()
        // Whatever happens, everything the namespace ran is stopped by pid and the namespace goes.
        do {
            try await Self.eachWayRound(namespace, venv: venv)
        } catch {
            await namespace.destroy()
            throw error
        }
        await namespace.destroy()
    }

    static func eachWayRound(_ namespace: Namespace, venv: String) async throws {
        try await namespace.make()
        let certificate = await Harness.run("/bin/bash", [Harness.repoRoot.appendingPathComponent("certs/make-dev-cert.sh").path, "-o", namespace.work.path, "127.0.0.1", "localhost"])
        try #require(certificate.status == 0, "\(certificate.stderr)")
        let crt = namespace.work.appendingPathComponent("server.crt").path, key = namespace.work.appendingPathComponent("server.key").path
        let originalS2UC = ["\(venv)/bin/s2uc"], certificateOption = ["--server_cert", crt]
        try await namespace.start(["\(venv)/bin/s2cs", "--type=HaproxySubprocess", "--listener_ip=127.0.0.1", "--port=5000", "--port_range=5100-5120",
                                   "--server_crt=\(crt)", "--server_key=\(key)"], ready: "gRPC Server started on 127.0.0.1:5000")
        try await namespace.start(["iperf3", "-s", "--forceflush", "-B", "127.0.0.1", "-p", "5201"], ready: "Server listening")

        // 1. The original is the producer's gateway, this one the consumer's.
        let inbound = await namespace.run(originalS2UC + ["inbound-request", "--s2cs", "127.0.0.1:5000", "--mock", "True", "--remote_ip", "127.0.0.1",
                                                          "--receiver_ports", "5201", "--num_conn", "1"] + certificateOption)
        let originalListener = try #require(Self.listeners(inbound.stdout).first, "the original's inbound request: \(inbound.stdout) \(inbound.stderr)")
        let originalPort = try #require(originalListener.split(separator: ":").last.map(String.init))
        let consumer = try await Daemon(type: "Haproxy", tls: false, extra: ["--data-plane-tls=False"])
        defer { consumer.stop() }
        let receiver = consumer.ports.ports.lowerBound
        let outbound = await Harness.s2uc(["outbound_request"] + consumer.clientArguments + ["--receiver_ports", "\(receiver)", Self.mockUID, "tcp://10.213.0.2:\(originalPort)"])
        #expect(outbound.status == 0 && Self.listeners(outbound.stdout) == ["127.0.0.1:\(receiver)"], "\(outbound.stdout) \(outbound.stderr)\n\(consumer.log)")
        let forward = await Harness.run("/usr/bin/iperf3", ["-c", "127.0.0.1", "-p", "\(receiver)", "-n", "32M", "--connect-timeout", "5000"], timeout: .seconds(60))
        #expect(TestbedSuites.TestbedTutorialTests.receivedBytes(forward.stdout) > Double(16 << 20), "iperf3 through original -> this: \(forward.stdout) \(forward.stderr)")
        #expect(await Harness.s2uc(["release", Self.mockUID] + consumer.clientArguments).status == 0)

        // 2. This one is the producer's gateway (plaintext: only the peer gateway may connect), the original the consumer's.
        let appPort = consumer.ports.ports.upperBound
        let app = Process()
        app.executableURL = URL(fileURLWithPath: "/usr/bin/iperf3")
        app.arguments = ["-s", "-B", "127.0.0.1", "-p", "\(appPort)"]
        app.standardOutput = FileHandle.nullDevice
        try app.run()
        // SIGKILL: a child of the test runner inherits its blocked SIGTERM (Testbed.swift says more).
        defer { kill(app.processIdentifier, SIGKILL); app.waitUntilExit() }
        let producer = try await Daemon(type: "Haproxy", tls: false, extra: ["--data-plane-tls=False", "--prod-listener-ip", "10.213.0.1", "--peer-gateways", "10.213.0.2/32",
                                                                                 "--allowed-targets", "127.0.0.1/32:\(appPort)"])
        defer { producer.stop() }
        let ourInbound = await Harness.s2uc(["inbound_request"] + producer.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "\(appPort)", "--num_conn", "1"])
        let ourListener = try #require(Self.listeners(ourInbound.stdout).first, "\(ourInbound.stdout) \(ourInbound.stderr)\n\(producer.log)")
        #expect(ourListener.hasPrefix("tcp://10.213.0.1:"), "\(ourListener)")
        let uid = String(try #require(ourInbound.lines.dropFirst().first).prefix(36))
        // The original's client takes the listener without `tcp://`, as its own gateways print them.
        let originalOutbound = await namespace.run(originalS2UC + ["outbound-request", "--s2cs", "127.0.0.1:5000", "--remote_ip", "127.0.0.1", "--receiver_ports", "5110",
                                                                   uid, String(ourListener.dropFirst("tcp://".count))] + certificateOption)
        let consumerSide = try #require(Self.listeners(originalOutbound.stdout).first, "the original's outbound request: \(originalOutbound.stdout) \(originalOutbound.stderr)")
        let consumerPort = try #require(consumerSide.split(separator: ":").last.map(String.init))
        // The original starts its proxy after it answers: wait until something listens there.
        try await waitUntil("the original's consumer-side proxy listens on \(consumerPort)", seconds: 20) {
            await namespace.run(["ss", "-Hltn", "sport = :\(consumerPort)"]).stdout.contains(":\(consumerPort)")
        }
        let backward = await namespace.run(["iperf3", "-c", "127.0.0.1", "-p", consumerPort, "-n", "32M", "--connect-timeout", "5000"])
        #expect(TestbedSuites.TestbedTutorialTests.receivedBytes(backward.stdout) > Double(16 << 20), "iperf3 through this -> original: \(backward.stdout) \(backward.stderr)")
        // Only the peer gateway reaches the producer-side listener: this host's own connection is refused.
        let stranger = await Harness.run("/usr/bin/iperf3", ["-c", "10.213.0.1", "-p", String(ourListener.split(separator: ":").last ?? ""), "-n", "1M", "--connect-timeout", "2000"], timeout: .seconds(30))
        #expect(stranger.status != 0, "a stranger got through the producer-side listener: \(stranger.stdout)")
        #expect(await Harness.s2uc(["release", uid] + producer.clientArguments).status == 0)
    }
}
