import Foundation
import Testing
import TestPorts
import SciStreamWire
import SciStreamSystem
import SciStreamClient
import SciStreamTLS

/// The control plane end to end: real s2cs and s2uc processes on loopback, with the Mock data server.
@Suite struct ControlPlaneTests {
    static let progress = ["sending client request message", "waiting for hello message", "sending for hello message", "Hello message sent successfully"]

    /// Checks the printed lines of an inbound/outbound request and returns (uid, listeners).
    func expectSessionOutput(_ output: Harness.Output, role: String, s2cs: String, sourceLocation: SourceLocation = #_sourceLocation) -> (String, [String]) {
        #expect(output.status == 0, "exit \(output.status); stderr: \(output.stderr)", sourceLocation: sourceLocation)
        let lines = output.lines
        guard lines.count == 7 else {
            Issue.record("expected 7 lines, got \(lines)", sourceLocation: sourceLocation)
            return ("", [])
        }
        #expect(lines[0] == "uid; s2cs; access_token; role", sourceLocation: sourceLocation)
        let fields = lines[1].split(separator: " ").map(String.init)
        #expect(fields.count == 4, sourceLocation: sourceLocation)
        #expect(fields.dropFirst().elementsEqual([s2cs, "INVALID_TOKEN", role]), "session line: \(lines[1])", sourceLocation: sourceLocation)
        #expect(Array(lines[2...5]) == Self.progress, sourceLocation: sourceLocation)
        #expect(lines[6].hasPrefix("Listeners: ['") && lines[6].hasSuffix("']"), "\(lines[6])", sourceLocation: sourceLocation)
        let inner = lines[6].dropFirst("Listeners: [".count).dropLast()
        let listeners = inner.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "'")) }
        return (fields.first ?? "", listeners)
    }

    @Test(arguments: [true, false])
    func inboundThenOutboundPrintTheSeedsLines(tls: Bool) async throws {
        let producer = try await Daemon(tls: tls, ports: try .reserve(21))
        let consumer = try await Daemon(tls: tls, ports: try .reserve(21))
        defer { producer.stop(); consumer.stop() }

        let inbound = await Harness.s2uc(["inbound_request"] + producer.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "5001", "--num_conn", "2"])
        let (uid, listeners) = expectSessionOutput(inbound, role: "PROD", s2cs: producer.address)
        #expect(try SessionID.validate(uid) == uid)
        // Two distinct ports from the range (another process may hold some of them).
        #expect(listeners.count == 2 && Set(listeners).count == 2)
        #expect(listeners.allSatisfy { $0.hasPrefix("127.0.0.1:") && producer.ports.contains(UInt16($0.dropFirst(10)) ?? 0) }, "\(listeners)")

        let outbound = await Harness.s2uc(["outbound_request"] + consumer.clientArguments + ["--receiver_ports", "\(consumer.ports[10])", uid, listeners.joined(separator: ",")])
        let (outUID, outListeners) = expectSessionOutput(outbound, role: "CONS", s2cs: consumer.address)
        #expect(outUID == uid)
        #expect(outListeners == ["127.0.0.1:\(consumer.ports[10])"])

        let list = await Harness.s2uc(["list"] + producer.clientArguments)
        #expect(list.status == 0)
        #expect(list.stdout.contains(String(uid.prefix(8))) && list.stdout.contains("active"))
        #expect(!list.stdout.contains(uid), "the listing must not show the whole uid (the session secret)")

        for daemon in [producer, consumer] {
            let release = await Harness.s2uc(["release", uid] + daemon.clientArguments)
            #expect(release.status == 0, "\(release.stderr)")
            #expect(release.lines.first == "Release completed")
        }
    }

    @Test func mockTrueUsesTheFixedUID() async throws {
        let daemon = try await Daemon(ports: try .reserve(11))
        defer { daemon.stop() }
        let output = await Harness.s2uc(["inbound-request", "--mock", "True"] + daemon.clientArguments + ["--remote-ip", "127.0.0.1", "--receiver-ports=5001", "--num-conn=1"])
        let (uid, listeners) = expectSessionOutput(output, role: "PROD", s2cs: daemon.address)
        #expect(uid == "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3")
        #expect(listeners == ["127.0.0.1:\(daemon.ports.lower)"])

        let again = await Harness.s2uc(["prod-req", "--mock", "True"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(again.status == 1)
        #expect(again.stderr.contains("ALREADY_EXISTS"), "\(again.stderr)")
    }

    @Test func releaseOfAnUnknownUIDSaysNotFound() async throws {
        let daemon = try await Daemon(ports: try .reserve(11))
        defer { daemon.stop() }
        let output = await Harness.s2uc(["release", "0e0b9c6a-1111-4222-8333-444455556666"] + daemon.clientArguments)
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("Error: release failed at s2cs \(daemon.address): NOT_FOUND"), "\(output.stderr)")
        #expect(output.stdout.isEmpty)
    }

    @Test func exhaustedRangeSaysResourceExhaustedAndNamesTheRange() async throws {
        let daemon = try await Daemon(ports: try .reserve(3), extra: ["--max-ports-per-client", "100"])
        defer { daemon.stop() }
        let first = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "2"])
        #expect(first.status == 0, "\(first.stderr)")
        let second = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "2"])
        #expect(second.status == 1)
        #expect(second.stderr.contains("RESOURCE_EXHAUSTED") && second.stderr.contains(daemon.ports.description), "\(second.stderr)")
        // Nothing half-made: one port is still free and a one-port session gets it.
        let third = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        let (_, listeners) = expectSessionOutput(third, role: "PROD", s2cs: daemon.address)
        #expect(listeners == ["127.0.0.1:\(daemon.ports.upper)"])
    }

    @Test func releasedPortsReturnAndAreNeverHandedOutTwice() async throws {
        let daemon = try await Daemon(ports: try .reserve(4), extra: ["--max-ports-per-client", "100"])
        defer { daemon.stop() }
        let a = expectSessionOutput(await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "2"]), role: "PROD", s2cs: daemon.address)
        let b = expectSessionOutput(await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "2"]), role: "PROD", s2cs: daemon.address)
        #expect(Set(a.1).isDisjoint(with: b.1))
        #expect(Set(a.1 + b.1).count == 4)
        #expect(await Harness.s2uc(["release", a.0] + daemon.clientArguments).status == 0)
        let c = expectSessionOutput(await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "2"]), role: "PROD", s2cs: daemon.address)
        #expect(Set(c.1) == Set(a.1))
    }

    @Test func helloTimeoutReleasesThePendingSession() async throws {
        let daemon = try await Daemon(tls: false, ports: try .reserve(2), extra: ["--max-ports-per-client", "100"], environment: ["S2CS_HELLO_TIMEOUT": "0.5"])
        defer { daemon.stop() }
        let target = ControlTarget(host: "127.0.0.1", port: daemon.port, tls: nil)
        let connection = try await ControlConnection.open(target)
        let uid = SessionID.random()
        let started = ContinuousClock.now
        let reply = try await connection.call(.request(Request(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, numConn: 2, rate: 10000, listenPorts: [])))
        guard case .requestReply(let requestReply) = reply else { Issue.record("unexpected \(reply)"); return }
        #expect(requestReply.status.code == .deadlineExceeded)
        #expect(requestReply.status.message.contains(String(uid.prefix(8))))
        #expect(ContinuousClock.now - started < .seconds(5))
        // Its ports came back: a two-port session fits again.
        let output = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "2"])
        #expect(output.status == 0, "\(output.stderr)")
    }

    @Test func twentyConcurrentInboundRequestsGetTheirOwnSessions() async throws {
        let daemon = try await Daemon(ports: try .reserve(100))
        defer { daemon.stop() }
        let outputs = await withTaskGroup(of: (Int, Harness.Output).self) { group in
            for index in 0..<20 {
                group.addTask {
                    (index, await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "2", "--remote_ip", "127.0.0.\(index + 1)", "--receiver_ports", "\(6000 + index)"]))
                }
            }
            var all: [(Int, Harness.Output)] = []
            for await result in group { all.append(result) }
            return all
        }
        var uids: Set<String> = []
        var ports: Set<String> = []
        for (_, output) in outputs {
            let (uid, listeners) = expectSessionOutput(output, role: "PROD", s2cs: daemon.address)
            uids.insert(uid)
            ports.formUnion(listeners)
        }
        #expect(uids.count == 20)
        #expect(ports.count == 40)
        // Each session kept its own targets.
        let connection = try await ControlConnection.open(ControlTarget(host: "127.0.0.1", port: daemon.port, tls: nil).withTLS(daemon))
        guard case .listReply(let list) = try await connection.call(.list(ListSessions(token: ""))) else { Issue.record("no list"); return }
        #expect(list.sessions.count == 20)
        #expect(Set(list.sessions.flatMap(\.targets)) == Set((0..<20).map { "127.0.0.\($0 + 1):\(6000 + $0)" }))
    }
}

extension ControlTarget {
    func withTLS(_ daemon: Daemon) throws -> ControlTarget {
        guard daemon.tls else { return self }
        return ControlTarget(host: host, port: port, tls: try TLSContext.client(trustAnchorPath: Harness.certificates.crt))
    }
}
