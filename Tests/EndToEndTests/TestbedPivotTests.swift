import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension TestbedSuites {
    /// The pivot of issue 10, tried where it matters: the other facility's gateway (consumers2)
    /// reaches the producer-side gateway's control port and asks it to forward into the producer
    /// facility: to the gateway's own loopback, to a link-local address, to the gateway itself, or
    /// (with --allowed-targets) to any LAN host but the producer application. Each request fails
    /// with PERMISSION_DENIED, starts no proxy and writes no session file; the tutorial's own session
    /// still works on the same s2cs.
    @Suite struct TestbedPivotTests {
        @Test func theOtherFacilityCannotPivotThroughTheProducerGateway() async throws {
            try await Testbed.withTestbed { started in
                for step in [Tutorial.producers2Certificate, Tutorial.producerTrustsProducers2] {
                    #expect(await Testbed.run(step).status == 0)
                }
                #expect(await Testbed.run("scripts/testbed cp producers2:server.crt consumers2:producers2.crt").status == 0)
                let s2cs = try await started.start("scripts/testbed exec producers2 s2cs --verbose --port=5007 --listener-ip=192.168.10.11 --type=Haproxy",
                                                    .prints("s2cs listening on"))
                let attack = "s2uc inbound_request --s2cs 192.168.10.11:5007 --server_cert producers2.crt --num_conn 1"
                let folder = Testbed.home("producers2").appendingPathComponent(".scistream")
                func sessionFiles() -> [String] {
                    sessionFolderEntries(folder).filter { !$0.hasPrefix(".") }
                }

                // Default policy: the gateway's loopback (its listeners are not on loopback), link-local,
                // and the gateway's own addresses, in any spelling.
                for target in ["--remote_ip 127.0.0.1 --receiver_ports 22", "--remote_ip localhost --receiver_ports 5007",
                               "--remote_ip ::ffff:127.0.0.1 --receiver_ports 22", "--remote_ip 169.254.169.254 --receiver_ports 80",
                               "--remote_ip 192.168.10.11 --receiver_ports 5007", "--remote_ip 192.168.20.10 --receiver_ports 22"] {
                    let output = await Testbed.exec("consumers2", "\(attack) \(target)")
                    #expect(output.status == 1, "\(target): \(output.stdout)")
                    #expect(output.stderr.contains("PERMISSION_DENIED") && output.stderr.contains("--allowed-targets"), "\(target): \(output.stderr)")
                    #expect(sessionFiles().isEmpty, "\(target): \(sessionFiles())")
                }
                #expect(s2cs.stderr.contains("target refused by policy"))
                #expect(!s2cs.stderr.contains("session active"))

                // The tutorial's session on the same s2cs is still served.
                let inbound = await Testbed.run(Tutorial.inbound)
                #expect(inbound.status == 0, "\(inbound.stderr)")
                let uid = String(inbound.lines.dropFirst().first?.prefix(36) ?? "")
                #expect(await Testbed.exec("producer", "s2uc release \(uid) --s2cs 192.168.10.11:5007").status == 0)
                await started.stopAll()

                // An operator who allows only the producer application's port: any other LAN host or port is refused.
                let fenced = try await started.start("scripts/testbed exec producers2 s2cs --verbose --port=5008 --listener-ip=192.168.10.11 --type=Haproxy --allowed-targets 192.168.10.10/32:5001",
                                                     .prints("s2cs listening on"))
                let fencedAttack = "s2uc inbound_request --s2cs 192.168.10.11:5008 --server_cert producers2.crt --num_conn 1"
                for target in ["--remote_ip 192.168.10.10 --receiver_ports 22", "--remote_ip 192.168.10.12 --receiver_ports 5001"] {
                    let output = await Testbed.exec("consumers2", "\(fencedAttack) \(target)")
                    #expect(output.status == 1 && output.stderr.contains("PERMISSION_DENIED"), "\(target): \(output.stderr)")
                }
                // (The released tutorial session's log stays, as release documents.)
                let left = sessionFiles().filter { !$0.hasPrefix(uid) }
                #expect(left.isEmpty, "\(left)")
                let allowed = await Testbed.exec("producer", "s2uc inbound_request --s2cs 192.168.10.11:5008 --remote_ip 192.168.10.10 --receiver_ports 5001 --num_conn 1")
                #expect(allowed.status == 0, "\(allowed.stderr)")
                #expect(fenced.stderr.contains("session active"))
            }
        }
    }
}
