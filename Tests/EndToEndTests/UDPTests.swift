import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamServer

/// UDP sessions (`--protocol udp`): Nginx with a plaintext hop forwards datagrams, and iperf3 -u
/// through such a tunnel reports what it sent and lost; elsewhere the request is refused, saying why.
@Suite(.serialized) struct UDPTests {
    /// `iperf3 -s` on `port`, until stopped (SIGKILL, then reaped: a child of the test runner may have
    /// SIGTERM blocked, inherited from the thread that started it).
    final class IperfServer: @unchecked Sendable {  // used by one test at a time
        let process = Process()
        let output: URL
        init(port: UInt16, folder: URL) async throws {
            output = folder.appendingPathComponent("iperf3-server.out")
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/iperf3")
            process.arguments = ["-s", "-p", "\(port)", "-B", "127.0.0.1", "--forceflush"]
            process.standardOutput = try FileHandle(forWritingTo: output)
            process.standardError = process.standardOutput
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let deadline = ContinuousClock.now + .seconds(10)
            while ContinuousClock.now < deadline, !((try? String(contentsOf: output, encoding: .utf8)) ?? "").contains("Server listening on") {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        func stop() {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    @Test func iperf3UDPThroughAnNginxPlaintextTunnel() async throws {
        let producer = try await Daemon(type: "Nginx", extra: ["--data-plane-tls=False", "--peer-gateways", "127.0.0.1"])
        let consumer = try await Daemon(type: "Nginx", extra: ["--data-plane-tls=False"])
        defer { producer.stop(); consumer.stop() }
        let appPort = producer.ports[9]
        let server = try await IperfServer(port: appPort, folder: producer.folder)
        defer { server.stop() }
        let listener = consumer.ports[5]
        let stream = await Harness.s2uc(["stream_request", "--protocol", "udp", "--prod_s2cs", producer.address, "--cons_s2cs", consumer.address,
                                         "--server_cert", Harness.certificates.crt, "--remote_ip", "127.0.0.1", "--receiver_ports", "\(appPort)",
                                         "--cons_receiver_ports", "\(listener)", "--num_conn", "1"])
        #expect(stream.status == 0, "\(stream.stderr)\n\(producer.log)\n\(consumer.log)")
        #expect(stream.lines.last == "Consumer listeners: ['127.0.0.1:\(listener)']")
        let config = try String(contentsOf: consumer.configFolder.appendingPathComponent("\(String(stream.lines[1].prefix(36))).conf"), encoding: .utf8)
        #expect(config.contains("listen 127.0.0.1:\(listener) udp;"))

        // 2 s at 10 Mbit/s of 1400-byte UDP datagrams (and iperf3's TCP control connection) through both gateways.
        let client = await Harness.run("/usr/bin/iperf3", ["-u", "-c", "127.0.0.1", "-p", "\(listener)", "-b", "10M", "-l", "1400", "-t", "2", "-J"])
        #expect(client.status == 0, "\(client.stdout.suffix(2000))\n\(client.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(client.stdout.utf8)) as? [String: Any])
        let end = try #require(json["end"] as? [String: Any])
        let sum = try #require(end["sum"] as? [String: Any], "\(end.keys)")
        let packets = (sum["packets"] as? NSNumber)?.intValue ?? 0
        let lost = (sum["lost_packets"] as? NSNumber)?.intValue ?? -1
        let bytes = (sum["bytes"] as? NSNumber)?.intValue ?? 0
        // iperf3 reports the datagrams sent and, from the server's end, those lost: most arrived (the
        // bound is loose: a loaded 2-core machine drops datagrams between processes).
        #expect(packets > 1000 && bytes > 1_400_000, "\(sum)")
        #expect(lost >= 0 && Double(lost) <= Double(packets) * 0.5, "lost \(lost) of \(packets): \(sum)")
        // Both sides count the session's TCP (the UDP datagrams go through Nginx's UDP listener).
        let listed = await Harness.s2uc(["list"] + consumer.clientArguments)
        #expect(listed.status == 0 && listed.lines.count == 3, "\(listed)")
    }

    @Test func udpIsRefusedWhereItCannotWorkSayingWhyAndWhatToDo() async throws {
        let encrypted = try await Daemon(type: "Nginx")
        let haproxy = try await Daemon(type: "Haproxy", extra: ["--data-plane-tls=False"])
        defer { encrypted.stop(); haproxy.stop() }
        let cases: [(Daemon, String)] = [
            (encrypted, "UDP cannot be encrypted there: none of HAProxy, Nginx and Stunnel speaks DTLS. Either carry the data over TCP (drop --protocol udp), or, on a trusted network or inside a VPN or IPsec tunnel between the gateways, use gateways whose s2cs run with --type Nginx --data-plane-tls=False"),
            (haproxy, "this s2cs runs Haproxy, which cannot forward UDP: only Nginx can; use gateways whose s2cs run with --type Nginx --data-plane-tls=False, or drop --protocol udp"),
        ]
        for (daemon, message) in cases {
            let output = await Harness.s2uc(["inbound_request", "--protocol", "UDP", "--num_conn", "1", "--remote_ip", "127.0.0.1", "--receiver_ports", "5001"] + daemon.clientArguments)
            #expect(output.status == 1)
            #expect(output.stderr.hasPrefix("Error: request failed at s2cs \(daemon.address): INVALID_ARGUMENT: ") && output.stderr.contains(message), "\(output.stderr)")
            let list = await Harness.s2uc(["list"] + daemon.clientArguments)
            #expect(list.lines.count == 1, "nothing reserved: \(list.stdout)")
        }
        let bad = await Harness.s2uc(["inbound_request", "--protocol", "sctp"] + encrypted.clientArguments)
        #expect(bad.status == 64 && bad.stderr.hasPrefix("Error: '--protocol' ") == false && bad.stderr.hasPrefix("Error: 'sctp' is not valid for '--protocol': use tcp (the default) or udp"), "\(bad.stderr)")
    }
}
