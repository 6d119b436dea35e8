import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The commands of docs/tutorial.md, in its order, exactly as it shows them (the tutorial uses
/// `--type=Haproxy` and the placeholder `<uid>`; the test substitutes the type and the real uid).
/// DocsTests checks that the tutorial shows these commands and no others.
enum Tutorial {
    static let up = "scripts/testbed up"
    static let status = "scripts/testbed status"
    static let producers2Certificate = "scripts/testbed exec producers2 make-dev-cert.sh 192.168.10.11 192.168.20.10"
    static let consumers2Certificate = "scripts/testbed exec consumers2 make-dev-cert.sh 192.168.30.10 192.168.20.11"
    static let producerTrustsProducers2 = "scripts/testbed cp producers2:server.crt producer:server.crt"
    static let consumerTrustsConsumers2 = "scripts/testbed cp consumers2:server.crt consumer:server.crt"
    static let producers2S2CS = "scripts/testbed exec producers2 s2cs --verbose --port=5007 --listener-ip=192.168.10.11 --type=Haproxy"
    static let inbound = "scripts/testbed exec producer s2uc inbound_request --s2cs 192.168.10.11:5007 --remote_ip 192.168.10.10 --receiver_ports 5001"
    static let consumers2S2CS = "scripts/testbed exec consumers2 s2cs --verbose --port=5007 --listener-ip=192.168.30.10 --type=Haproxy"
    static let outbound = "scripts/testbed exec consumer s2uc outbound_request --s2cs 192.168.30.10:5007 --receiver_ports 5100 <uid> 192.168.10.11:5100"
    static let iperfServer = "scripts/testbed exec producer iperf3 -s -p 5001"
    static let iperfClient = "scripts/testbed exec consumer iperf3 -c 192.168.30.10 -p 5100 -t 5"
    static let listening = "scripts/testbed exec consumers2 ss -tlpn"
    static let captureBetweenGateways = "scripts/testbed exec consumers2 tcpdump -i eth1 -n -w gateways.pcap -c 300 tcp"
    static let captureConsumerLAN = "scripts/testbed exec consumers2 tcpdump -i eth2 -n -w consumer-lan.pcap -c 300 tcp"
    static let patternClient = "scripts/testbed exec consumer iperf3 -c 192.168.30.10 -p 5100 -t 2 --repeating-payload"
    static let patternOnConsumerLAN = "scripts/testbed exec consumers2 tcpdump -r consumer-lan.pcap -A | grep -c 0123456789"
    static let patternBetweenGateways = "scripts/testbed exec consumers2 tcpdump -r gateways.pcap -A | grep -c 0123456789"
    static let releaseConsumerSide = "scripts/testbed exec consumer s2uc release <uid> --s2cs 192.168.30.10:5007"
    static let releaseProducerSide = "scripts/testbed exec producer s2uc release <uid> --s2cs 192.168.10.11:5007"
    static let down = "scripts/testbed down"

    /// Every command, in the tutorial's order (`listening` appears twice: before and after release).
    static let all = [
        up, status, producers2Certificate, consumers2Certificate, producerTrustsProducers2, consumerTrustsConsumers2,
        producers2S2CS, inbound, consumers2S2CS, outbound, iperfServer, iperfClient, listening,
        captureBetweenGateways, captureConsumerLAN, patternClient, patternOnConsumerLAN, patternBetweenGateways,
        releaseConsumerSide, releaseProducerSide, listening, down,
    ]

    /// The commands that move application data: with the Mock data server there is no tunnel.
    static let dataPlaneOnly: Set<String> = [
        iperfServer, iperfClient, captureBetweenGateways, captureConsumerLAN, patternClient, patternOnConsumerLAN, patternBetweenGateways,
    ]

    /// The commands that keep running (each in a terminal of its own in the tutorial).
    static let background: Set<String> = [producers2S2CS, consumers2S2CS, iperfServer, captureBetweenGateways, captureConsumerLAN]

    /// iperf3 --repeating-payload sends "0123456789" over and over.
    static let payloadPattern = Array("0123456789012345678901234567890123456789".utf8)
}

/// One run of the tutorial: renders each command for a type and a uid, runs it, records it, and
/// compares its output with the output the tutorial shows, where it shows one.
final class TutorialRun: @unchecked Sendable {  // used by one test at a time
    let type: String
    let document: TutorialDocument
    let started: Testbed.Started
    var uid = "<uid>"
    private(set) var executed: [String] = []
    private var documentIndex = 0

    init(type: String, document: TutorialDocument, started: Testbed.Started) {
        self.type = type
        self.document = document
        self.started = started
    }

    func render(_ template: String) -> String {
        template.replacingOccurrences(of: "--type=Haproxy", with: "--type=\(type)").replacingOccurrences(of: "<uid>", with: uid)
    }

    /// What a reader of the tutorial would see: our test run's namespace prefix is the default one,
    /// and a session id is the placeholder `<uid>`.
    func normalize(_ text: String) -> String {
        text.replacingOccurrences(of: Testbed.prefix, with: "s2t-")
            .replacing(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/, with: "<uid>")
    }

    /// The tutorial's own entry for this command: the next one in the document with this line.
    private func documented(_ template: String) -> TutorialDocument.Command? {
        guard let index = document.commands[documentIndex...].firstIndex(where: { $0.line == template }) else { return nil }
        documentIndex = index + 1
        return document.commands[index]
    }

    @discardableResult
    func run(_ template: String, sourceLocation: SourceLocation = #_sourceLocation) async -> Harness.Output {
        precondition(!Tutorial.background.contains(template))
        executed.append(template)
        let output = await Testbed.run(render(template))
        let entry = documented(template)
        #expect(entry != nil, "the tutorial does not show '\(template)' at this point", sourceLocation: sourceLocation)
        if let expected = entry?.output {
            #expect(normalize(output.stdout) == expected, "'\(template)' printed what the tutorial does not show (stderr: \(output.stderr))", sourceLocation: sourceLocation)
        }
        return output
    }

    func start(_ template: String, _ readiness: Readiness, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Background {
        precondition(Tutorial.background.contains(template))
        executed.append(template)
        #expect(documented(template) != nil, "the tutorial does not show '\(template)' at this point", sourceLocation: sourceLocation)
        return try await started.start(render(template), readiness)
    }
}

extension TestbedSuites {
    /// docs/tutorial.md, step by step, in the four-host testbed: two s2cs on the gateways, s2uc on
    /// the end hosts, iperf3 from the consumer through the consumer-side gateway to the producer,
    /// a capture between the gateways, release, and nothing left behind.
    @Suite struct TestbedTutorialTests {
        static let types = ["Mock", "Haproxy", "Nginx", "Stunnel"]

        @Test(arguments: types)
        func theTutorialStepByStep(type: String) async throws {
            let document = try TutorialDocument.load()
            // withTestbed guarantees the teardown; the tutorial starts with no testbed at all.
            try await Testbed.withTestbed { started in
                await Testbed.down()
                let tutorial = TutorialRun(type: type, document: document, started: started)
                let moves = type != "Mock"  // whether this data server moves bytes

                // The four hosts, and each gateway's certificate with both its addresses as names.
                #expect(await tutorial.run(Tutorial.up).status == 0)
                #expect(await tutorial.run(Tutorial.status).status == 0)
                for step in [Tutorial.producers2Certificate, Tutorial.consumers2Certificate, Tutorial.producerTrustsProducers2, Tutorial.consumerTrustsConsumers2] {
                    let output = await tutorial.run(step)
                    #expect(output.status == 0, "\(step): \(output.stderr)")
                }

                // Producer side: s2cs on producers2, the inbound request from the producer.
                let producers2 = try await tutorial.start(Tutorial.producers2S2CS, .prints("s2cs listening on 0.0.0.0:5007"))
                let inbound = await tutorial.run(Tutorial.inbound)
                try #require(inbound.status == 0, "inbound_request failed: \(inbound.stderr)\n\(producers2.stderr)")
                let fields = inbound.lines.dropFirst().first?.split(separator: " ").map(String.init) ?? []
                try #require(fields.count == 4, "\(inbound.stdout)")
                tutorial.uid = fields[0]
                #expect(Array(fields.dropFirst()) == ["192.168.10.11:5007", "INVALID_TOKEN", "PROD"])
                #expect(inbound.lines.last == "Listeners: ['192.168.10.11:5100', '192.168.10.11:5101', '192.168.10.11:5102', '192.168.10.11:5103', '192.168.10.11:5104']")

                // Consumer side: s2cs on consumers2, the outbound request from the consumer, towards the
                // producer-side listener.
                let consumers2 = try await tutorial.start(Tutorial.consumers2S2CS, .prints("s2cs listening on 0.0.0.0:5007"))
                let outbound = await tutorial.run(Tutorial.outbound)
                try #require(outbound.status == 0, "outbound_request failed: \(outbound.stderr)\n\(consumers2.stderr)")
                #expect(outbound.lines.last == "Listeners: ['192.168.30.10:5100']")

                var iperfServer: Background? = nil
                if moves {
                    // iperf3 from the consumer, through the consumer-side gateway, to the producer.
                    iperfServer = try await tutorial.start(Tutorial.iperfServer, .listens(host: "producer", port: 5001))
                    let client = await tutorial.run(Tutorial.iperfClient)
                    #expect(client.status == 0, "iperf3 -c failed: \(client.stdout)\n\(client.stderr)\n\(consumers2.stderr)\n\(producers2.stderr)")
                    let received = Self.receivedBytes(client.stdout)
                    #expect(received > Double(1 << 20), "iperf3 reports \(received) bytes received: \(client.stdout)")
                }

                let listening = await tutorial.run(Tutorial.listening)
                #expect(listening.stdout.contains("0.0.0.0:5007"), "\(listening.stdout)")
                let proxyLine = listening.lines.first { $0.contains("192.168.30.10:5100") }
                if moves {
                    #expect(proxyLine.map { ["haproxy", "nginx", "stunnel"].contains(where: $0.contains) } == true,
                            "no proxy listens on 192.168.30.10:5100: \(listening.stdout)")
                } else {
                    #expect(proxyLine == nil, "Mock starts no proxy: \(listening.stdout)")
                }

                if moves {
                    // The app's bytes are plaintext between the consumer and its gateway, and not between
                    // the gateways.
                    let gatewayCapture = try await tutorial.start(Tutorial.captureBetweenGateways, .prints("listening on eth1"))
                    let lanCapture = try await tutorial.start(Tutorial.captureConsumerLAN, .prints("listening on eth2"))
                    let client = await tutorial.run(Tutorial.patternClient)
                    #expect(client.status == 0, "iperf3 --repeating-payload failed: \(client.stdout)\n\(client.stderr)")
                    for capture in [gatewayCapture, lanCapture] where !(await capture.waitForExit(timeout: .seconds(10))) {
                        await capture.stop(SIGINT)  // fewer than 300 packets: stop it as Ctrl-C would
                    }
                    let onLAN = await tutorial.run(Tutorial.patternOnConsumerLAN)
                    #expect((Int(onLAN.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) > 0,
                            "the control capture on the consumer's LAN should show the pattern: \(onLAN.stdout) \(onLAN.stderr)")
                    let betweenGateways = await tutorial.run(Tutorial.patternBetweenGateways)
                    #expect(betweenGateways.stdout == "0\n", "plaintext between the gateways: \(betweenGateways.stdout)")

                    let gateways = try PacketCapture(contentsOf: Testbed.home("consumers2").appendingPathComponent("gateways.pcap"))
                    let lan = try PacketCapture(contentsOf: Testbed.home("consumers2").appendingPathComponent("consumer-lan.pcap"))
                    let crossed = gateways.payloadBytes(between: "192.168.20.11", and: "192.168.10.11")
                    #expect(crossed > 64 << 10, "only \(crossed) payload bytes crossed the gateway link in the capture")
                    #expect(!gateways.payloadsContain(Tutorial.payloadPattern), "the app's payload pattern crossed the gateway link in plaintext")
                    let raw = [UInt8](try Data(contentsOf: Testbed.home("consumers2").appendingPathComponent("gateways.pcap")))
                    #expect(!raw.containsSequence(Tutorial.payloadPattern), "the app's payload pattern is in the gateway capture")
                    #expect(lan.payloadsContain(Tutorial.payloadPattern), "the control capture did not see the pattern: the check would prove nothing")
                }

                // Release, both sides; the proxies go, the ports are free again.
                for step in [Tutorial.releaseConsumerSide, Tutorial.releaseProducerSide] {
                    let release = await tutorial.run(step)
                    #expect(release.status == 0, "\(step): \(release.stderr)")
                    #expect(release.stdout == "Release completed\n")
                }
                let after = await tutorial.run(Tutorial.listening)
                #expect(!after.stdout.contains(":5100"), "still listening after release: \(after.stdout)")
                let producerSide = await Testbed.run("ip netns exec \(Testbed.namespace("producers2")) ss -Htln")
                #expect(!producerSide.stdout.contains(":510"), "producers2 still listens after release: \(producerSide.stdout)")

                // Ctrl-C in each s2cs terminal: it stops; nothing of it or its proxies is left.
                for (daemon, host) in [(consumers2, "consumers2"), (producers2, "producers2")] {
                    #expect(await daemon.stop(SIGINT) == 0, "s2cs on \(host) did not exit cleanly: \(daemon.stderr)")
                    let left = await Testbed.run("ip netns pids \(Testbed.namespace(host))")
                    #expect(left.stdout.isEmpty, "processes left in \(host) after s2cs stopped: \(left.stdout)")
                }
                if let iperfServer {
                    await iperfServer.stop(SIGINT)
                    // The producer application's connections came from its own gateway, not from the consumer.
                    #expect(iperfServer.stdout.contains("Accepted connection from 192.168.10.11"), "\(iperfServer.stdout)")
                    #expect(!iperfServer.stdout.contains("192.168.30.11"), "\(iperfServer.stdout)")
                }

                let down = await tutorial.run(Tutorial.down)
                #expect(down.status == 0)
                #expect(Testbed.namespaces().isEmpty)

                let expected = moves ? Tutorial.all : Tutorial.all.filter { !Tutorial.dataPlaneOnly.contains($0) }
                #expect(tutorial.executed == expected, "the test did not run every command of the tutorial in order")
            }
        }

        /// The bit rate iperf3 -c reports on its "receiver" line (e.g. "9.87 Mbits/sec").
        static func receiverBitrate(_ output: String) -> Double {
            guard let line = output.split(separator: "\n").last(where: { $0.hasSuffix("receiver") }) else { return 0 }
            let tokens = line.split(separator: " ").map(String.init)
            guard let unit = tokens.firstIndex(where: { $0.hasSuffix("bits/sec") }), unit > 0, let value = Double(tokens[unit - 1]) else { return 0 }
            let scale: [String: Double] = ["bits/sec": 1, "Kbits/sec": 1e3, "Mbits/sec": 1e6, "Gbits/sec": 1e9]
            return value * (scale[tokens[unit]] ?? 0)
        }

        /// The bytes iperf3 -c reports on its "receiver" line (e.g. "3.87 GBytes").
        static func receivedBytes(_ output: String) -> Double {
            guard let line = output.split(separator: "\n").last(where: { $0.hasSuffix("receiver") }) else { return 0 }
            let tokens = line.split(separator: " ").map(String.init)
            guard let sec = tokens.firstIndex(of: "sec"), sec + 2 < tokens.count, let value = Double(tokens[sec + 1]) else { return 0 }
            let scale: [String: Double] = ["Bytes": 1, "KBytes": 1024, "MBytes": 1024 * 1024, "GBytes": 1024 * 1024 * 1024, "TBytes": 1024 * 1024 * 1024 * 1024]
            return value * (scale[tokens[sec + 2]] ?? 0)
        }
    }
}
