import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension TestbedSuites {
    /// Listener addressing in the four-host testbed: the producer-side gateway is reachable by the
    /// consumer-side one only through a NAT (nftables DNAT in producers2 from a public address,
    /// 203.0.113.10, to its gateway-link address; direct connections to the session ports dropped),
    /// so its PROD listeners bind 192.168.20.10 and are told as 203.0.113.10 (`--advertise-ip`). The
    /// tutorial's iperf3 session crosses it end to end. The consumer-side gateway puts its CONS
    /// listeners on the application-facing address only (`--cons-listener-ip`): its gateway-link
    /// address does not answer on them.
    @Suite struct TestbedNATTests {
        static let publicAddress = "203.0.113.10"
        static let natRules = """
            table ip s2t_nat {
                chain prerouting { type nat hook prerouting priority dstnat; ip daddr 203.0.113.10 tcp dport 5100-5199 dnat to 192.168.20.10; }
            }
            table ip s2t_filter {
                chain input { type filter hook input priority filter; iifname "eth2" tcp dport 5100-5199 ct status dnat accept; iifname "eth2" tcp dport 5100-5199 drop; }
            }
            """

        @Test func aProducerSideGatewayBehindNATCarriesTheTutorialsSession() async throws {
            try #require(FileManager.default.isExecutableFile(atPath: "/usr/sbin/nft"), "nft is not installed: scripts/install-deps test (nftables)")
            try await Testbed.withTestbed { started in
                func exec(_ host: String, _ command: String) async -> Harness.Output { await Testbed.exec(host, command) }
                for step in ["producers2 make-dev-cert.sh 192.168.10.11 192.168.20.10", "consumers2 make-dev-cert.sh 192.168.30.10 192.168.20.11"] {
                    let output = await Testbed.run("scripts/testbed exec \(step)")
                    #expect(output.status == 0, "\(step): \(output.stderr)")
                }
                for step in ["producers2:server.crt producer:server.crt", "consumers2:server.crt consumer:server.crt"] {
                    #expect(await Testbed.run("scripts/testbed cp \(step)").status == 0)
                }
                // The NAT in producers2, and consumers2's way to the public address.
                let rules = Testbed.home("producers2").appendingPathComponent("nat.nft")
                try Self.natRules.write(to: rules, atomically: true, encoding: .utf8)
                let nat = await exec("producers2", "nft -f nat.nft")
                try #require(nat.status == 0, "nft: \(nat.stderr)")
                let route = await Testbed.run("ip -n \(Testbed.namespace("consumers2")) route add \(Self.publicAddress)/32 via 192.168.20.10")
                try #require(route.status == 0, "\(route.stderr)")

                let producers2 = try await started.start(
                    "scripts/testbed exec producers2 s2cs --verbose --port=5007 --listener-ip=192.168.10.11 --prod-listener-ip=192.168.20.10 --advertise-ip=\(Self.publicAddress) --type=Haproxy",
                    .prints("s2cs listening on 0.0.0.0:5007"))
                let inbound = await exec("producer", "s2uc inbound_request --s2cs 192.168.10.11:5007 --remote_ip 192.168.10.10 --receiver_ports 5001")
                try #require(inbound.status == 0, "inbound_request: \(inbound.stderr)\n\(producers2.stderr)")
                let uid = try #require(inbound.lines.dropFirst().first?.split(separator: " ").first.map(String.init))
                #expect(inbound.lines.last == "Listeners: [" + (5100...5104).map { "'\(Self.publicAddress):\($0)'" }.joined(separator: ", ") + "]",
                        "PROD listeners are told as the public address: \(inbound.stdout)")

                let consumers2 = try await started.start(
                    "scripts/testbed exec consumers2 s2cs --verbose --port=5007 --prod-listener-ip=192.168.20.11 --cons-listener-ip=192.168.30.10 --type=Haproxy",
                    .prints("s2cs listening on 0.0.0.0:5007"))
                let outbound = await exec("consumer", "s2uc outbound_request --s2cs 192.168.30.10:5007 --receiver_ports 5100 \(uid) \(Self.publicAddress):5100")
                try #require(outbound.status == 0, "outbound_request: \(outbound.stderr)\n\(consumers2.stderr)")
                #expect(outbound.lines.last == "Listeners: ['192.168.30.10:5100']")

                // The producer side's listener is reachable through the NAT only.
                let direct = await exec("consumers2", "timeout 3 bash -c 'exec 3<>/dev/tcp/192.168.20.10/5100'")
                #expect(direct.status != 0, "producers2's listener answered on its own address, not only through the NAT")
                let throughNAT = await exec("consumers2", "timeout 3 bash -c 'exec 3<>/dev/tcp/\(Self.publicAddress)/5100'")
                #expect(throughNAT.status == 0, "the NAT does not lead to producers2's listener: \(throughNAT.stderr)")

                // The tutorial's iperf3 session, end to end.
                let server = try await started.start("scripts/testbed exec producer iperf3 -s -p 5001", .listens(host: "producer", port: 5001))
                let client = await exec("consumer", "iperf3 -c 192.168.30.10 -p 5100 -t 3")
                #expect(client.status == 0, "iperf3 through the NAT: \(client.stdout)\n\(client.stderr)\n\(consumers2.stderr)\n\(producers2.stderr)")
                let received = TestbedTutorialTests.receivedBytes(client.stdout)
                #expect(received > Double(1 << 20), "iperf3 reports \(received) bytes received: \(client.stdout)")

                // The CONS listener is on the application-facing address only: the consumer-side
                // gateway's address on the gateways' link does not answer on its port.
                let listening = await Testbed.run("ip netns exec \(Testbed.namespace("consumers2")) ss -Htln")
                #expect(listening.stdout.contains("192.168.30.10:5100") && !listening.stdout.contains("0.0.0.0:5100"), "\(listening.stdout)")
                let fromLink = await exec("producers2", "timeout 3 bash -c 'exec 3<>/dev/tcp/192.168.20.11/5100'")
                #expect(fromLink.status != 0, "the CONS listener answered on the gateways' link")

                for (host, gateway) in [("consumer", "192.168.30.10"), ("producer", "192.168.10.11")] {
                    let release = await exec(host, "s2uc release \(uid) --s2cs \(gateway):5007")
                    #expect(release.stdout == "Release completed\n", "\(release.stderr)")
                }
                await server.stop(SIGINT)
                #expect(server.stdout.contains("Accepted connection from 192.168.10.11"), "\(server.stdout)")
            }
        }
    }
}
