import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension TestbedSuites {
    /// `scripts/testbed` itself: the topology it builds, the isolation it promises, idempotence,
    /// full cleanup, and its refusal where namespaces are not permitted.
    @Suite struct TestbedScriptTests {
        static let expectedHosts = """
            producer eth1 192.168.10.10/24
            producers2 eth1 192.168.10.11/24
            producers2 eth2 192.168.20.10/24
            consumers2 eth1 192.168.20.11/24
            consumers2 eth2 192.168.30.10/24
            consumer eth1 192.168.30.11/24

            """

        static let expectedRoutes = """
            producers2 192.168.30.10/32 192.168.20.11
            consumers2 192.168.10.11/32 192.168.20.10

            """

        @Test func hostsAndRoutesAreTheTutorials() async {
            #expect(await Testbed.script(["hosts"]).stdout == Self.expectedHosts)
            #expect(await Testbed.script(["routes"]).stdout == Self.expectedRoutes)
        }

        @Test func upBuildsTheFourHostsIdempotentlyAndDownRemovesEverything() async throws {
            try await Testbed.withTestbed { _ in
                #expect(Testbed.namespaces() == Testbed.hosts.map(Testbed.namespace).sorted())

                // Every address and route in place, loopback up, forwarding off, nothing else.
                for line in Self.expectedHosts.split(separator: "\n") {
                    let fields = line.split(separator: " ").map(String.init)
                    let addresses = await Testbed.run("ip -n \(Testbed.namespace(fields[0])) -o -4 addr show dev \(fields[1])")
                    #expect(addresses.stdout.contains(" \(fields[2]) "), "\(line): \(addresses.stdout)")
                }
                for host in Testbed.hosts {
                    let namespace = Testbed.namespace(host)
                    let routes = await Testbed.run("ip -n \(namespace) -4 route show")
                    let viaRoutes = routes.lines.filter { $0.contains(" via ") }
                    switch host {
                    case "producers2": #expect(viaRoutes == ["192.168.30.10 via 192.168.20.11 dev eth2 "], "\(routes.stdout)")
                    case "consumers2": #expect(viaRoutes == ["192.168.10.11 via 192.168.20.10 dev eth1 "])
                    default: #expect(viaRoutes.isEmpty, "\(host) must have no route beyond its subnet: \(routes.stdout)")
                    }
                    #expect(!routes.stdout.contains("default"), "\(host): \(routes.stdout)")
                    let forwarding = await Testbed.run("ip netns exec \(namespace) cat /proc/sys/net/ipv4/ip_forward")
                    #expect(forwarding.stdout == "0\n", "\(host) forwards packets")
                    let loopback = await Testbed.run("ip -n \(namespace) -o link show lo")
                    #expect(loopback.stdout.contains("UP"), "\(host): lo is down: \(loopback.stdout)")
                    let links = await Testbed.run("ip -n \(namespace) -o link show")
                    #expect(links.lines.count == (host.hasSuffix("s2") ? 3 : 2), "\(host): \(links.stdout)")
                }
                // Nothing in the root namespace.
                let rootLinks = await Harness.run("/bin/bash", ["-c", "ip -o link show"])
                #expect(!rootLinks.stdout.contains(Testbed.prefix))

                let status = await Testbed.script(["status"])
                #expect(status.status == 0)
                #expect(status.lines.first == "testbed up")

                // Again: same result, no error.
                let again = await Testbed.script(["up"])
                #expect(again.status == 0, "\(again.stderr)")
                #expect(await Testbed.script(["status"]).stdout == status.stdout)

                let down = await Testbed.down()
                #expect(down.status == 0, "\(down.stderr)")
                #expect(down.stdout == "testbed down\n")
                #expect(Testbed.namespaces().isEmpty)
                #expect(!FileManager.default.fileExists(atPath: Testbed.homeRoot.path))
                let downAgain = await Testbed.down()
                #expect(downAgain.status == 0)
                #expect(downAgain.stdout == "testbed already down\n")
                let statusDown = await Testbed.script(["status"])
                #expect(statusDown.status == 1)
                #expect(statusDown.stdout == "testbed down\n")
            }
        }

        /// Connects with bash's /dev/tcp from inside a host; returns (connected, error text).
        static func connect(from host: String, to address: String, port: Int) async -> (Bool, String) {
            let result = await Testbed.exec(host, "bash -c 'exec 3<>/dev/tcp/\(address)/\(port)'")
            return (result.status == 0, result.stderr)
        }

        @Test func producerCannotReachTheConsumerNorAnythingBeyondItsSubnet() async throws {
            try await Testbed.withTestbed { started in
                // A TCP server on every address of every host (each host's own iperf3, bound to one address).
                for line in Self.expectedHosts.split(separator: "\n") {
                    let fields = line.split(separator: " ").map(String.init)
                    let address = String(fields[2].prefix { $0 != "/" })
                    try await started.start("scripts/testbed exec \(fields[0]) iperf3 -s -p 5201 -B \(address)", .listens(host: fields[0], port: 5201))
                }
                // Positive controls: neighbours reach each other, and the gateways reach each other's far side.
                let reachable: [(String, String)] = [
                    ("producer", "192.168.10.11"), ("producers2", "192.168.10.10"),
                    ("producers2", "192.168.20.11"), ("consumers2", "192.168.20.10"),
                    ("consumers2", "192.168.30.11"), ("consumer", "192.168.30.10"),
                    ("consumers2", "192.168.10.11"), ("producers2", "192.168.30.10"),
                ]
                for (host, address) in reachable {
                    let (connected, error) = await Self.connect(from: host, to: address, port: 5201)
                    #expect(connected, "\(host) should reach \(address): \(error)")
                }
                // The producer cannot reach the consumer, nor anything past its gateway; and back.
                let unreachable: [(String, String)] = [
                    ("producer", "192.168.30.11"), ("producer", "192.168.30.10"), ("producer", "192.168.20.10"), ("producer", "192.168.20.11"),
                    ("consumer", "192.168.10.10"), ("consumer", "192.168.10.11"), ("consumer", "192.168.20.10"), ("consumer", "192.168.20.11"),
                    ("consumers2", "192.168.10.10"), ("producers2", "192.168.30.11"),
                ]
                for (host, address) in unreachable {
                    let (connected, error) = await Self.connect(from: host, to: address, port: 5201)
                    #expect(!connected, "\(host) must not reach \(address)")
                    #expect(error.contains("Network is unreachable"), "\(host) -> \(address): \(error)")
                }
                let route = await Testbed.exec("producer", "ip route get 192.168.30.11")
                #expect(route.status != 0)
                #expect(route.stderr.contains("Network is unreachable"), "\(route.stderr)")
            }
        }

        @Test func upRepairsAPartialTestbed() async throws {
            try await Testbed.withTestbed { started in
                _ = await Testbed.run("ip -n \(Testbed.namespace("producers2")) link del eth2")
                _ = await Testbed.run("ip netns del \(Testbed.namespace("consumer"))")
                let partial = await Testbed.script(["status"])
                #expect(partial.status == 1)
                #expect(partial.lines.first?.hasPrefix("testbed partial") == true, "\(partial.stdout)")
                let exec = await Testbed.exec("consumer", "true")
                #expect(exec.status == 1)
                #expect(exec.stderr.contains("the testbed is not up"), "\(exec.stderr)")

                let up = await Testbed.script(["up"])
                #expect(up.status == 0, "\(up.stderr)")
                #expect(await Testbed.script(["status"]).status == 0)
                try await started.start("scripts/testbed exec consumer iperf3 -s -p 5201", .listens(host: "consumer", port: 5201))
                #expect(await Self.connect(from: "consumers2", to: "192.168.30.11", port: 5201).0)
                #expect(await Self.connect(from: "consumers2", to: "192.168.10.11", port: 22).1.contains("Connection refused"),
                        "the route to producers2 is back: the connection is refused by producers2, not unreachable")
            }
        }

        @Test func downStopsWhatRunsInsideByPIDEvenWhatIgnoresSIGTERM() async throws {
            try await Testbed.withTestbed { started in
                let polite = try await started.start("scripts/testbed exec producer iperf3 -s -p 5201", .listens(host: "producer", port: 5201))
                let stubborn = try await started.start("scripts/testbed exec consumers2 bash -c 'trap \"\" TERM; echo ready; while :; do sleep 0.1; done'", .prints("ready"))
                let inside = await Testbed.run("ip netns pids \(Testbed.namespace("producer"))")
                #expect(inside.lines == ["\(polite.pid)"], "the PID we hold is the command's own: \(inside.stdout)")

                let begun = ContinuousClock.now
                let down = await Testbed.down()
                #expect(down.status == 0, "\(down.stderr)")
                #expect(down.stderr.contains("did not stop on SIGTERM: SIGKILL"), "\(down.stderr)")
                #expect(ContinuousClock.now - begun < .seconds(15))
                #expect(await polite.waitForExit(timeout: .seconds(5)))
                #expect(await stubborn.waitForExit(timeout: .seconds(5)))
                #expect(!processExists(polite.pid))
                #expect(!processExists(stubborn.pid))
                #expect(Testbed.namespaces().isEmpty)
            }
        }

        @Test func execAndCpWorkInEachHostsOwnHome() async throws {
            try Testbed.requirePermitted()
            await Testbed.cleanLeftovers()
            let before = await Testbed.exec("producer", "true")
            #expect(before.status == 1)
            #expect(before.stderr.contains("the testbed is not up"), "\(before.stderr)")
            try await Testbed.withTestbed { _ in

                let env = await Testbed.exec("producers2", "bash -c 'pwd; echo $HOME; echo $HAPROXY_CONFIG_PATH'")
                let home = Testbed.home("producers2").path
                #expect(env.lines == [home, home, home + "/.scistream"])
                _ = await Testbed.exec("producers2", "bash -c 'echo hello > note.txt'")
                let copy = await Testbed.run("scripts/testbed cp producers2:note.txt consumer:copied.txt")
                #expect(copy.status == 0, "\(copy.stderr)")
                #expect(copy.stdout == "copied producers2:note.txt to consumer:copied.txt\n")
                #expect((try? String(contentsOf: Testbed.home("consumer").appendingPathComponent("copied.txt"), encoding: .utf8)) == "hello\n")

                let unknown = await Testbed.run("scripts/testbed exec nowhere true")
                #expect(unknown.status == 64)
                #expect(unknown.stderr.hasPrefix("Error: unknown host 'nowhere': use producer producers2 consumers2 consumer"), "\(unknown.stderr)")
                let missing = await Testbed.run("scripts/testbed cp producer:absent.txt consumer:")
                #expect(missing.status == 1)
                #expect(missing.stderr.hasPrefix("Error: 'producer:absent.txt' does not exist"), "\(missing.stderr)")
            }
        }

        @Test func refusesWithAClearMessageWhereNamespacesAreNotPermitted() async throws {
            // An unprivileged user is the machine that does not permit namespaces; as root, become one.
            let folder = Harness.temporaryFolder("refusal")
            defer { try? FileManager.default.removeItem(at: folder) }
            let copy = folder.appendingPathComponent("testbed")
            try FileManager.default.copyItem(atPath: Testbed.script, toPath: copy.path)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: copy.path)
            let command = getuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups \(copy.path)" : copy.path
            let prefix = "s2t-refused-"
            for subcommand in ["up", "check"] {
                let result = await Harness.run("/bin/bash", ["-c", "S2T_PREFIX=\(prefix) \(command) \(subcommand)"], cwd: folder)
                #expect(result.status == 3, "\(subcommand): exit \(result.status): \(result.stderr)")
                #expect(result.stderr.hasPrefix("Error: this machine does not permit network namespaces: 'ip netns add' failed: "), "\(result.stderr)")
                #expect(result.stderr.contains("needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"), "\(result.stderr)")
                #expect(result.stdout.isEmpty)
            }
            #expect(Testbed.namespaces(prefix: prefix).isEmpty)
        }
    }
}
