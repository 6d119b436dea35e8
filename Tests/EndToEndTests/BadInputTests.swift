import Foundation
import Testing
import SciStreamWire
import SciStreamSystem
import SciStreamTLS
import SciStreamServer

/// Bad input gets a clear message, a non-zero exit, and changes nothing.
@Suite struct BadInputTests {
    static let cases: [(arguments: [String], message: String)] = [
        (["inbound_request", "--receiver_ports", "50a1"], "'50a1' is not a port"),
        (["inbound_request", "--receiver_ports", "70000"], "70000"),
        (["inbound_request", "--receiver_ports", ""], "empty"),
        (["inbound_request", "--num_conn", "0"], "--num_conn"),
        (["inbound_request", "--num_conn", "-3"], "--num_conn"),
        (["inbound_request", "--num_conn", "100000"], "1 to 100"),
        (["inbound_request", "--receiver_ports", "5001,5002", "--num_conn", "1"], "--receiver_ports lists 2 ports, more than --num_conn 1"),
        (["inbound_request", "--s2cs", "localhost"], "--s2cs"),
        (["inbound_request", "--s2cs", "local host:5000"], "--s2cs"),
        (["inbound_request", "--remote_ip", "10.0.0.1\nserver evil 1.2.3.4:1"], "--remote_ip"),
        (["inbound_request", "--mock", "maybe"], "--mock"),
        (["inbound_request", "--bogus", "1"], "unknown option '--bogus'"),
        (["outbound_request", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"], "missing the producer listener"),
        (["outbound_request", "not-a-uid", "127.0.0.1:5100"], "bad uid"),
        (["outbound_request", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3", "127.0.0.1:5100 #"], "bad listener list"),
        (["outbound_request", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3", "127.0.0.1:5100\nbind"], "bad listener list"),
        (["outbound_request", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3", "127.0.0.1"], "bad listener list"),
        (["release"], "missing the uid"),
        (["release", "'; rm -rf /"], "bad uid"),
        (["frobnicate"], "unknown subcommand 'frobnicate'"),
    ]

    @Test(arguments: 0..<cases.count)
    func s2ucRejectsBadInputWithUsageExit(index: Int) async {
        let (arguments, message) = Self.cases[index]
        let output = await Harness.s2uc(arguments + ["--ssl", "False"])
        #expect(output.status == 64, "\(arguments): exit \(output.status)")
        #expect(output.stderr.hasPrefix("Error: "), "\(output.stderr)")
        #expect(output.stderr.contains(message), "\(arguments): \(output.stderr)")
        #expect(output.stderr.contains("See 's2uc"), "\(output.stderr)")
        #expect(output.stdout.isEmpty, "nothing printed on stdout: \(output.stdout)")
    }

    static let daemonCases: [(arguments: [String], message: String)] = [
        (["--type", "Squid"], "unknown data server type 'Squid'"),
        (["--port-range", "5200-5100"], "5200-5100"),
        (["--port_range=abc"], "abc"),
        (["--port", "70000"], "--port"),
        (["--ssl", "perhaps"], "--ssl"),
        (["--listener-ip", "1.2.3.4 5"], "1.2.3.4 5"),
        (["--whatever"], "unknown option '--whatever'"),
        (["--hello_timeout", "-1"], "--hello-timeout"),
        (["--proxy-buffer-size", "2m"], "'2m' is not valid for '--proxy-buffer-size': use a size from 4k to 256k"),
        (["--proxy_buffer_size=257k"], "--proxy-buffer-size"),
    ]

    @Test(arguments: 0..<daemonCases.count)
    func s2csRejectsBadFlagsWithUsageExit(index: Int) async {
        let (arguments, message) = Self.daemonCases[index]
        let output = await Harness.run(Harness.s2cs, arguments + ["--port", "0"].filter { _ in !arguments.contains("--port") })
        #expect(output.status == 64, "\(arguments): exit \(output.status) \(output.stderr)")
        #expect(output.stderr.hasPrefix("Error: "), "\(output.stderr)")
        #expect(output.stderr.contains(message), "\(arguments): \(output.stderr)")
    }

    @Test func s2csWithMissingCertificateFilesSaysWhichFile() async {
        let folder = Harness.temporaryFolder("nocert")
        defer { try? FileManager.default.removeItem(at: folder) }
        let output = await Harness.run(Harness.s2cs, ["--port", "0", "--type", "Mock", "--server_crt", folder.appendingPathComponent("nope.crt").path, "--server_key", folder.appendingPathComponent("nope.key").path], cwd: folder)
        #expect(output.status == 1)
        #expect(output.stderr.contains("nope.crt"), "\(output.stderr)")
    }

    @Test func s2ucWithMissingServerCertSaysWhatToDo() async throws {
        let folder = Harness.temporaryFolder("nocert")
        defer { try? FileManager.default.removeItem(at: folder) }
        let output = await Harness.s2uc(["inbound_request", "--s2cs", "127.0.0.1:1"], cwd: folder)
        #expect(output.status == 1)
        #expect(output.stderr.contains("'server.crt' does not exist") && output.stderr.contains("--server_cert"), "\(output.stderr)")
    }

    @Test func unreachableS2csIsAClearError() async throws {
        // A port that nothing listens on: bind one, note it, close it.
        let socket = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0))
        let port = socket.localAddress?.port ?? 1
        socket.close()
        let output = await Harness.s2uc(["inbound_request", "--s2cs", "127.0.0.1:\(port)", "--ssl", "False"])
        #expect(output.status == 1)
        #expect(output.stderr.contains("cannot connect to s2cs at 127.0.0.1:\(port)") && output.stderr.contains("is s2cs running there?"), "\(output.stderr)")
    }

    @Test func tlsClientAgainstPlaintextS2csSaysUseSslFalse() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        let output = await Harness.s2uc(["inbound_request", "--s2cs", daemon.address, "--server_cert", Harness.certificates.crt])
        #expect(output.status == 1)
        #expect(output.stderr.contains("--ssl False"), "\(output.stderr)")
    }

    @Test func plaintextClientAgainstTLSS2csSaysUseTLS() async throws {
        let daemon = try await Daemon(tls: true)
        defer { daemon.stop() }
        let output = await Harness.s2uc(["inbound_request", "--s2cs", daemon.address, "--ssl", "False"])
        #expect(output.status == 1)
        #expect(output.stderr.contains("requires TLS") && output.stderr.contains("--server_cert"), "\(output.stderr)")
    }

    @Test func certificateForAnotherHostIsRefused() async throws {
        let folder = Harness.temporaryFolder("othercert")
        defer { try? FileManager.default.removeItem(at: folder) }
        let made = Harness.runSync("/bin/bash", [Harness.repoRoot.appendingPathComponent("certs/make-dev-cert.sh").path, "-o", folder.path, "10.9.9.9"])
        #expect(made.status == 0, "\(made.stderr)")
        let crt = folder.appendingPathComponent("server.crt").path
        let daemon = try await Daemon(tls: true, extra: ["--server_crt", crt, "--server_key", folder.appendingPathComponent("server.key").path])
        defer { daemon.stop() }
        let output = await Harness.s2uc(["inbound_request", "--s2cs", daemon.address, "--server_cert", crt])
        #expect(output.status == 1)
        #expect(output.stderr.contains("TLS verification of s2cs at \(daemon.address) failed"), "\(output.stderr)")
    }

    @Test func helpAndVersionGoToStdoutWithExitZero() async {
        for arguments in [["--help"], ["inbound_request", "--help"], ["outbound-request", "-h"], ["release", "--help"], ["--version"]] {
            let output = await Harness.s2uc(arguments)
            #expect(output.status == 0)
            #expect(!output.stdout.isEmpty && output.stderr.isEmpty, "\(arguments)")
        }
        let help = await Harness.s2uc(["inbound_request", "--help"])
        for option in ["--s2cs", "--remote_ip", "--receiver_ports", "--num_conn", "--rate", "--server_cert", "--mock"] {
            #expect(help.stdout.contains(option), "help lacks \(option)")
        }
        #expect(help.stdout.contains("(default: 5)") && help.stdout.contains("unlimited") && help.stdout.contains("(default: localhost:5000)"))
        for arguments in [["--help"], ["--version"]] {
            let output = await Harness.run(Harness.s2cs, arguments)
            #expect(output.status == 0 && !output.stdout.isEmpty)
        }
    }
}
