import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension TestbedSuites {
    /// docs/troubleshooting.md quotes error messages; this suite makes each of those mistakes in the
    /// testbed, with the tutorial's hosts and addresses, and checks that the guide quotes exactly the
    /// message this code prints, and quotes no message that the code does not print.
    @Suite struct TestbedTroubleshootingTests {
        static let guide = "docs/troubleshooting.md"

        /// The section whose messages need Globus Auth (TroubleshootingAuthTests makes them, on loopback).
        static let authSection = "## INVALID_TOKEN and authentication"

        /// The error lines the guide quotes: lines of its ```text blocks that start like an error,
        /// in the authentication section or (`authentication: false`) in all the others.
        static func quotedErrors(authentication: Bool = false) throws -> Set<String> {
            let text = try DocsTests.text(guide)
            var quoted: Set<String> = []
            var inText = false
            var inAuthSection = false
            for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let line = rawLine.trimmingCharacters(in: .whitespaces)  // fences may be indented in lists
                if line.hasPrefix("## ") { inAuthSection = line == authSection }
                if line.hasPrefix("```") { inText = !inText && line == "```text"; continue }
                if inText && inAuthSection == authentication && (line.hasPrefix("Error: ") || line.hasPrefix("iperf3: error")) {
                    quoted.insert(String(line))
                }
            }
            return quoted
        }

        /// Collects the first error line of each mistake.
        final class Mistakes: @unchecked Sendable {  // used by one test at a time
            var messages: [String: String] = [:]

            func record(_ name: String, _ output: Harness.Output, status: Int32 = 1, sourceLocation: SourceLocation = #_sourceLocation) {
                #expect(output.status == status, "\(name): exit \(output.status)", sourceLocation: sourceLocation)
                let line = output.stderr.split(separator: "\n").first { $0.hasPrefix("Error: ") || $0.hasPrefix("iperf3: error") }
                guard let line else {
                    Issue.record("\(name): no error message; stderr: \(output.stderr) stdout: \(output.stdout)", sourceLocation: sourceLocation)
                    return
                }
                messages[name] = String(line)
            }
        }

        @Test func theGuideQuotesTheMessagesOfTheseMistakes() async throws {
            try await Testbed.withTestbed { started in
                let mistakes = Mistakes()
                func exec(_ host: String, _ command: String) async -> Harness.Output { await Testbed.exec(host, command) }
                func start(_ host: String, _ command: String, port: Int) async throws {
                    try await started.start("scripts/testbed exec \(host) \(command)", .listens(host: host, port: port))
                }
                let inbound = "s2uc inbound_request --s2cs 192.168.10.11:5007 --remote_ip 192.168.10.10 --receiver_ports 5001"

                // Certificates not made yet: s2cs has none to present, s2uc none to trust.
                mistakes.record("s2cs without certificate", await exec("producers2", "s2cs --port=5007 --listener-ip=192.168.10.11 --type=Mock"))
                mistakes.record("s2uc without certificate", await exec("producer", inbound))
                for step in [Tutorial.producers2Certificate, Tutorial.consumers2Certificate, Tutorial.producerTrustsProducers2, Tutorial.consumerTrustsConsumers2] {
                    #expect(await Testbed.run(step).status == 0)
                }

                // No s2cs yet.
                mistakes.record("s2cs not running", await exec("producer", inbound))

                // The tutorial's s2cs (Mock: these mistakes are all on the control channel), then mistakes
                // in starting more.
                try await started.start("scripts/testbed exec producers2 s2cs --port=5007 --listener-ip=192.168.10.11 --type=Mock", .prints("s2cs listening on"))
                mistakes.record("control port in use", await exec("producers2", "s2cs --port=5007 --listener-ip=192.168.10.11 --type=Mock"))
                mistakes.record("listener-ip of another host", await exec("consumers2", "s2cs --port=5007 --listener-ip=192.168.10.11 --type=Mock"))
                // The proxy of --type missing (hidden from s2cs by a bind mount in a mount namespace of its own).
                mistakes.record("proxy not installed", await Testbed.run(
                    "scripts/testbed exec producers2 unshare --mount bash -c 'mount --bind /dev/null /usr/sbin/haproxy && exec s2cs --port=5011 --listener-ip=192.168.10.11 --type=Haproxy'",
                    timeout: .seconds(20)))
                mistakes.record("unknown type", await exec("consumers2", "s2cs --port=5007 --listener-ip=192.168.30.10 --type=haproxy2"), status: 64)

                // The consumer dials an address it has no route to (the original tutorial's 192.168.20.x).
                mistakes.record("s2cs unreachable", await exec("consumer", "s2uc outbound_request --s2cs 192.168.20.11:5007 --receiver_ports 5100 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3 192.168.10.11:5100"))
                mistakes.record("application dials the far gateway", await exec("consumer", "iperf3 -c 192.168.20.10 -p 5100 -t 5"))

                // The wrong certificate: another gateway's, or one that does not name the address dialled.
                #expect(await Testbed.run("scripts/testbed cp consumers2:server.crt producer:consumers2.crt").status == 0)
                mistakes.record("another gateway's certificate", await exec("producer", inbound + " --server_cert consumers2.crt"))
                #expect(await exec("producers2", "bash -c 'mkdir -p byname && make-dev-cert.sh -o byname producers2'").status == 0)
                // More s2cs on this host while the first runs: each needs a session folder of its own
                // (the testbed sets HAPROXY_CONFIG_PATH, which the first s2cs holds).
                func ownFolder(_ port: Int) -> String { Testbed.home("producers2").appendingPathComponent(".scistream-\(port)").path }
                try await start("producers2", "s2cs --port=5008 --listener-ip=192.168.10.11 --type=Mock --server_crt byname/server.crt --server_key byname/server.key --config-folder=\(ownFolder(5008))", port: 5008)
                #expect(await Testbed.run("scripts/testbed cp producers2:byname/server.crt producer:byname.crt").status == 0)
                mistakes.record("certificate without the address", await exec("producer", "s2uc inbound_request --s2cs 192.168.10.11:5008 --server_cert byname.crt"))

                // TLS on one end only.
                mistakes.record("--ssl False against TLS", await exec("producer", inbound + " --ssl False"))
                try await start("producers2", "s2cs --port=5009 --listener-ip=192.168.10.11 --type=Mock --ssl=False --config-folder=\(ownFolder(5009))", port: 5009)
                mistakes.record("TLS against --ssl=False", await exec("producer", "s2uc inbound_request --s2cs 192.168.10.11:5009"))

                // A session as in the tutorial, then port conflicts.
                let session = await exec("producer", inbound)
                #expect(session.status == 0, "\(session.stderr)")
                let uid = String(session.lines.dropFirst().first?.prefix(36) ?? "")
                try await start("consumers2", "s2cs --port=5007 --listener-ip=192.168.30.10 --type=Mock", port: 5007)
                let outbound = await exec("consumer", "s2uc outbound_request --s2cs 192.168.30.10:5007 --receiver_ports 5100 \(uid) 192.168.10.11:5100")
                #expect(outbound.status == 0, "\(outbound.stderr)")
                mistakes.record("receiver port in use", await exec("consumer", "s2uc outbound_request --s2cs 192.168.30.10:5007 --receiver_ports 5100 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3 192.168.10.11:5101"))
                try await start("producers2", "s2cs --port=5010 --listener-ip=192.168.10.11 --type=Mock --port-range=5300-5301 --config-folder=\(ownFolder(5010))", port: 5010)
                mistakes.record("port range exhausted", await exec("producer", "s2uc inbound_request --s2cs 192.168.10.11:5010 --remote_ip 192.168.10.10 --receiver_ports 5001"))

                // uids.
                mistakes.record("uid cut short", await exec("consumer", "s2uc outbound_request --s2cs 192.168.30.10:5007 4f8583bc 192.168.10.11:5100"), status: 64)
                mistakes.record("release of an unknown uid", await exec("producer", "s2uc release 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3 --s2cs 192.168.10.11:5007"))
                #expect(await exec("producer", inbound + " --mock True").status == 0)
                mistakes.record("--mock True twice", await exec("producer", inbound + " --mock True"))

                let quoted = try Self.quotedErrors()
                for (name, message) in mistakes.messages.sorted(by: { $0.key < $1.key }) {
                    #expect(quoted.contains(message), "\(Self.guide) does not quote the message of '\(name)':\n\(message)")
                }
                let produced = Set(mistakes.messages.values)
                for message in quoted.sorted() where !produced.contains(message) {
                    Issue.record("\(Self.guide) quotes a message no test produces:\n\(message)")
                }
            }
        }

        /// The guide's answers about the data plane, with each real proxy: proxies left by a killed
        /// s2cs are stopped by the next s2cs (their pid files are in ~/.scistream), and a tunnel
        /// opened with another session's uid lets nothing through to the application.
        @Test(arguments: ["Haproxy", "Nginx", "Stunnel"])
        func theDataPlaneAnswersHold(type: String) async throws {
            try await Testbed.withTestbed { started in
                for step in [Tutorial.producers2Certificate, Tutorial.consumers2Certificate, Tutorial.producerTrustsProducers2, Tutorial.consumerTrustsConsumers2] {
                    #expect(await Testbed.run(step).status == 0)
                }
                func start(_ template: String) async throws -> Background {
                    let line = template.replacingOccurrences(of: "--type=Haproxy", with: "--type=\(type)")
                    return try await started.start(line, .prints("s2cs listening on"))
                }
                _ = try await start(Tutorial.producers2S2CS)
                let consumers2 = try await start(Tutorial.consumers2S2CS)
                let inbound = await Testbed.run(Tutorial.inbound)
                try #require(inbound.status == 0, "\(inbound.stderr)")
                let uid = String(inbound.lines.dropFirst().first?.prefix(36) ?? "")
                let outbound = await Testbed.run(Tutorial.outbound.replacingOccurrences(of: "<uid>", with: uid))
                try #require(outbound.status == 0, "\(outbound.stderr)")

                // Another session's uid on the consumer side: the producer side refuses the tunnel and
                // the producer application sees no connection at all.
                let wrong = await Testbed.exec("consumer", "s2uc outbound_request --s2cs 192.168.30.10:5007 --receiver_ports 5105 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3 192.168.10.11:5101")
                #expect(wrong.status == 0, "the consumer side cannot know the uid is wrong: \(wrong.stderr)")
                try await started.start("scripts/testbed exec producer iperf3 -s -p 5001", .listens(host: "producer", port: 5001))
                let syns = try await started.start("scripts/testbed exec producer tcpdump -i eth1 -n -c 1 'tcp[tcpflags] & tcp-syn != 0 and dst port 5001'", .prints("listening on eth1"))
                let attempt = await Testbed.exec("consumer", "iperf3 -c 192.168.30.10 -p 5105 -t 1")
                #expect(attempt.status != 0, "iperf3 went through a tunnel opened with the wrong uid: \(attempt.stdout)")
                try await Task.sleep(for: .milliseconds(300))
                #expect(syns.isRunning, "a connection reached the producer application: \(syns.stdout)")
                await syns.stop(SIGINT)
                #expect(syns.stderr.contains("0 packets captured"), "\(syns.stderr)")
                // The right uid still works.
                let right = await Testbed.run(Tutorial.iperfClient.replacingOccurrences(of: "-t 5", with: "-t 1"))
                #expect(right.status == 0, "\(right.stdout) \(right.stderr)")
                if type == "Nginx" {
                    // "A steady, low rate with Nginx: a request gave --rate": Nginx holds each connection to it.
                    let limited = await Testbed.exec("producer", "s2uc inbound_request --s2cs 192.168.10.11:5007 --remote_ip 192.168.10.10 --receiver_ports 5001 --num_conn 1 --rate 10000")
                    #expect(limited.status == 0, "\(limited.stderr)")
                    let limitedUID = String(limited.lines.dropFirst().first?.prefix(36) ?? "")
                    let listener = limited.lines.last?.split(separator: "'").dropFirst().first.map(String.init) ?? ""
                    let slow = await Testbed.exec("consumer", "s2uc outbound_request --s2cs 192.168.30.10:5007 --receiver_ports 5110 --num_conn 1 --rate 10000 \(limitedUID) \(listener)")
                    #expect(slow.status == 0, "\(slow.stderr)")
                    let run = await Testbed.exec("consumer", "iperf3 -c 192.168.30.10 -p 5110 -t 2")
                    let rate = TestbedTutorialTests.receiverBitrate(run.stdout)
                    #expect(rate > 5e6 && rate < 12e6, "--rate 10000 with Nginx should hold a connection to about 10 Mbit/s: \(rate) bit/s \(run.stdout) \(run.stderr)")
                    // Without --rate (the tutorial's requests), no limit.
                    #expect(TestbedTutorialTests.receiverBitrate(right.stdout) > 100e6, "\(right.stdout)")
                }

                // s2cs killed without a chance to clean up: its proxy stays, with its pid file.
                let scistream = Testbed.home("consumers2").appendingPathComponent(".scistream")
                let pidText = try String(contentsOf: scistream.appendingPathComponent("\(uid).pid"), encoding: .utf8)
                let proxy = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)), "pid file: \(pidText)")
                #expect(isAlive(proxy))
                await consumers2.stop(SIGKILL)
                try await Task.sleep(for: .milliseconds(300))
                #expect(isAlive(proxy), "the proxy went with s2cs: nothing to clean up")
                let listed = await Testbed.exec("consumers2", "bash -c 'ps -ef | grep \"haproxy\\|stunnel\\|nginx\" | grep -v grep'")
                #expect(listed.stdout.contains(" \(proxy) "), "ps does not list the left proxy \(proxy): \(listed.stdout)")
                // The next s2cs with the same folder stops it.
                let again = try await start(Tutorial.consumers2S2CS)
                let deadline = ContinuousClock.now + .seconds(10)
                while isAlive(proxy) && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
                #expect(!isAlive(proxy), "the next s2cs did not stop the left proxy \(proxy)")
                #expect(again.stderr.contains("stopped proxies left by an earlier s2cs"), "\(again.stderr)")
            }
        }
    }
}

/// Whether a process is alive: it exists and is not a zombie waiting for a parent that may never
/// reap it (a proxy whose s2cs was killed is reparented).
func isAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}
