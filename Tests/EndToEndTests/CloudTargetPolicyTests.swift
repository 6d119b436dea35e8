import Foundation
import Testing
import SciStreamWire
import SciStreamServer
import TestPorts

/// Issue 23 section 4: what a cloud gateway can reach is refused by the default target policy,
/// judged on the numeric address after resolution whatever the spelling, for PROD and CONS targets,
/// and never a target on this s2cs's own control or metrics port.
@Suite struct CloudTargetPolicyTests {
    /// Cloud metadata and platform addresses, in the spellings a resolver turns into them.
    static let cloudTargets = [
        "[fd00:ec2::254]:80", "[fd00:ec2:0:0:0:0:0:254]:80",                      // AWS IMDS over IPv6
        "100.100.100.200:80", "0x64.0x64.0x64.0xc8:80", "0x646464c8:80",          // Alibaba, in hex (a name to the parser, an address to the resolver)
        "[::ffff:100.100.100.200]:80", "[::ffff:6464:64c8]:80",                     // IPv4-mapped
        "168.63.129.16:80", "[::ffff:168.63.129.16]:80", "[64:ff9b::a83f:8110]:80",  // Azure, and through NAT64
        "100.64.0.1:5001", "100.127.255.254:5001", "[::ffff:100.64.7.7]:5001",       // carrier-grade NAT
    ]

    /// Decimal and octal IPv4 spellings, which the resolver would accept: refused before resolution.
    static let unparsedTargets = ["1684300999:80", "0144.0144.0144.0310:80", "0250.0077.0201.0020:80"]

    @Test func cloudMetadataAndCarrierGradeNATAreRefusedWithNothingStarted() async throws {
        // A short --hello-timeout: a hello refused as malformed leaves its request to expire.
        let daemon = try await Daemon(type: "Haproxy", ports: try .reserve(10), extra: ["--listener-ip", "0.0.0.0", "--hello-timeout", "1"])
        defer { daemon.stop() }
        for target in Self.cloudTargets {
            for role in [Role.prod, .cons] {
                let session = try await driveSession(daemon.target, role: role, targets: [target])
                #expect(session.hello.code == .permissionDenied, "\(role) \(target): \(session.hello)")
                #expect(session.hello.message.contains("--allowed-targets"), "\(target): \(session.hello.message)")
                #expect(session.request.code == .permissionDenied, "the request fails too: \(role) \(target): \(session.request)")
                #expect(session.update == nil)
            }
        }
        for target in Self.unparsedTargets {
            for role in [Role.prod, .cons] {
                let session = try await driveSession(daemon.target, role: role, targets: [target])
                #expect(session.hello.code == .invalidArgument, "\(role) \(target): \(session.hello)")
                #expect(session.update == nil)
            }
        }
        daemon.expectNothingStarted()
        // Why is in the server's log only.
        for reason in ["the AWS instance metadata service", "the Alibaba Cloud metadata service", "the Azure platform service",
                       "carrier-grade NAT block", "through NAT64"] {
            #expect(daemon.log.contains(reason), "\(reason)")
        }
        let list = await Harness.s2uc(["list"] + daemon.clientArguments)
        #expect(list.lines.count == 1, "no session left: \(list.stdout)")
    }

    @Test func carrierGradeNATIsAllowedWhenTheOperatorSaysSo() async throws {
        let daemon = try await Daemon(type: "Mock", ports: try .reserve(4), extra: ["--allowed-targets", "100.64.0.0/10"])
        defer { daemon.stop() }
        let session = try await driveSession(daemon.target, targets: ["100.64.0.1:5001"])
        #expect(session.update?.code == .ok, "\(session)")
    }

    @Test func theKubernetesAPIServiceIsRefusedInAPod() async throws {
        let daemon = try await Daemon(type: "Haproxy", ports: try .reserve(4), extra: ["--listener-ip", "0.0.0.0"],
                                      environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"])
        defer { daemon.stop() }
        for target in ["10.96.0.1:443", "[::ffff:10.96.0.1]:6443"] {
            let session = try await driveSession(daemon.target, targets: [target])
            #expect(session.hello.code == .permissionDenied, "\(target): \(session.hello)")
        }
        daemon.expectNothingStarted()
        #expect(daemon.log.contains("is the Kubernetes API service (KUBERNETES_SERVICE_HOST"), "\(daemon.log)")
    }

    /// With TLS between gateways, a CONS target is still a connection this gateway makes: the same
    /// policy judges it (before, any address was accepted).
    @Test func consTargetsInTLSModeAreCheckedByThePolicy() async throws {
        let daemon = try await Daemon(type: "Haproxy", ports: try .reserve(10), extra: ["--listener-ip", "0.0.0.0"])
        defer { daemon.stop() }
        for target in ["169.254.169.254:80", "127.0.0.1:22", "[::ffff:127.0.0.1]:22"] {
            let outbound = await Harness.s2uc(["outbound_request"] + daemon.clientArguments + [SessionID.random(), target])
            #expect(outbound.status != 0, "\(target): \(outbound.stdout)")
            #expect(outbound.stderr.contains("not allowed by this s2cs (--allowed-targets)"), "\(target): \(outbound.stderr)")
        }
        daemon.expectNothingStarted()
    }

    /// Listeners on loopback (loopback targets allowed: the single-host demo) and an advertised
    /// address: the control and metrics ports of this s2cs are still refused, on every address of this host.
    @Test func thisS2csOwnControlAndMetricsPortsAreRefused() async throws {
        let metricsPort = try PortBlock.port()
        let daemon = try await Daemon(type: "Haproxy", ports: try .reserve(10),
                                      extra: ["--advertise-ip", "192.0.2.10", "--metrics", "127.0.0.1:\(metricsPort)"])
        defer { daemon.stop() }
        for target in ["127.0.0.1:\(daemon.port)", "localhost:\(daemon.port)", "[::ffff:127.0.0.1]:\(daemon.port)",
                       "127.0.0.2:\(daemon.port)", "192.0.2.10:\(daemon.port)", "127.0.0.1:\(metricsPort)"] {
            let session = try await driveSession(daemon.target, targets: [target])
            #expect(session.hello.code == .permissionDenied, "\(target): \(session.hello)")
            #expect(session.update == nil)
        }
        daemon.expectNothingStarted()
        #expect(daemon.log.contains("is this s2cs's own control or metrics port"), "\(daemon.log)")
    }
}
