import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Listener addressing on loopback (127.0.0.0/8 is all local): PROD and CONS listeners bind their
/// own addresses, PROD listeners are told as `--advertise-ip`, and only bind addresses must be
/// local. TestbedNATTests runs the same behind a real NAT in the testbed's namespaces.
@Suite struct ListenerAddressingTests {
    /// Whether a TCP socket listens on exactly this IPv4 address and port (/proc/net/tcp, state 0A).
    static func listening(_ host: String, _ port: UInt16) -> Bool {
        let octets = host.split(separator: ".").compactMap { UInt8($0) }
        guard octets.count == 4 else { return false }
        let local = octets.reversed().map { String(format: "%02X", $0) }.joined() + String(format: ":%04X", port)
        let text = procFile("/proc/net/tcp")
        return text.split(separator: "\n").dropFirst().contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 3 && fields[1] == local && fields[3] == "0A"
        }
    }

    @Test func prodAndConsListenersBindTheirOwnAddressesAndProdIsToldAsAdvertised() async throws {
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let producer = try await Daemon(type: "Haproxy", extra: ["--prod-listener-ip", "127.0.0.2", "--advertise-ip", "gateway.example.org"])
        let consumer = try await Daemon(type: "Haproxy", extra: ["--cons-listener-ip", "127.0.0.3"])
        defer { producer.stop(); consumer.stop() }

        let inbound = await Harness.s2uc(["inbound_request"] + producer.clientArguments
                                         + ["--remote_ip", "127.0.0.1", "--receiver_ports", "\(app.port)", "--num_conn", "1"])
        #expect(inbound.status == 0, "\(inbound.stderr)\n\(producer.log)")
        let uid = String(try #require(inbound.lines.dropFirst().first).prefix(36))
        let prodPort = producer.ports[0]
        #expect(inbound.lines.last == "Listeners: ['gateway.example.org:\(prodPort)']", "\(inbound.stdout)")

        // The consumer side dials the producer side where a NAT would map the advertised address.
        let consPort = consumer.ports[0]
        let outbound = await Harness.s2uc(["outbound_request"] + consumer.clientArguments
                                          + ["--receiver_ports", "\(consPort)", uid, "127.0.0.2:\(prodPort)"])
        #expect(outbound.status == 0, "\(outbound.stderr)\n\(consumer.log)")
        #expect(outbound.lines.last == "Listeners: ['127.0.0.3:\(consPort)']", "\(outbound.stdout)")
        // Both proxies run now (the producer side's is started by the update, which may still be
        // finishing when outbound_request returns).
        try await waitUntil("the PROD listener listens on --prod-listener-ip 127.0.0.2:\(prodPort)") { Self.listening("127.0.0.2", prodPort) }
        #expect(!Self.listening("127.0.0.1", prodPort) && !Self.listening("0.0.0.0", prodPort))
        #expect(Self.listening("127.0.0.3", consPort) && !Self.listening("127.0.0.1", consPort))

        let sent = try await sendRandomBytes(to: consPort, host: "127.0.0.3", count: 4 << 20)
        let received = await app.results()
        #expect(received.first?.bytes == 4 << 20 && received.first?.sha256 == sent)
        for daemon in [producer, consumer] {
            #expect(await Harness.s2uc(["release", uid] + daemon.clientArguments).status == 0)
        }
    }

    @Test func onlyBindAddressesMustBeLocal() async throws {
        let folder = Harness.temporaryFolder("addressing")
        defer { try? FileManager.default.removeItem(at: folder) }
        func start(_ extra: [String]) async -> Harness.Output {
            await Harness.run(Harness.s2cs, ["--port", "0", "--bind", "127.0.0.1", "--ssl=False", "--type", "Mock",
                                             "--config_folder", folder.appendingPathComponent("s2cs").path] + extra, timeout: .seconds(20))
        }
        for (flag, value) in [("--prod-listener-ip", "192.0.2.1"), ("--cons-listener-ip", "192.0.2.1"), ("--listener-ip", "192.0.2.1")] {
            let output = await start([flag, value])
            #expect(output.status == 1)
            #expect(output.stderr == "Error: \(flag) \(value) is not an address of this host: session listeners could not bind to it (use one of this host's addresses, or 0.0.0.0; behind NAT, bind a local address and give the public one with --advertise-ip)\n", "\(output.stderr)")
        }
        let badHost = await start(["--advertise-ip", "gate way"])
        #expect(badHost.status == 64)
        #expect(badHost.stderr.hasPrefix("Error: "), "\(badHost.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("s2cs").path), "nothing written")

        // An advertised address that is not local, and a --listener-ip that no role binds, start.
        for extra in [["--listener-ip", "127.0.0.1", "--advertise-ip", "192.0.2.1"],
                      ["--listener-ip", "192.0.2.1", "--prod-listener-ip", "127.0.0.1", "--cons-listener-ip", "127.0.0.1"]] {
            let daemon = try await Daemon(tls: false, extra: extra)
            #expect(daemon.log.contains("s2cs started"), "\(extra): \(daemon.log)")
            daemon.stop()
        }
    }
}
