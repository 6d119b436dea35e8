import Foundation
import Testing

/// What can be checked of the Vagrantfile and its provisioning without Vagrant or VirtualBox: the
/// machines and addresses are the testbed's, the routes are the testbed's, the scripts parse.
@Suite struct VagrantfileTests {
    static let vagrantfile = Harness.repoRoot.appendingPathComponent("Vagrantfile").path
    static let provision = Harness.repoRoot.appendingPathComponent("scripts/provision.sh").path

    /// Evaluates the Vagrantfile against a stand-in for Vagrant's configuration API that records
    /// what it is told, and prints one line per machine setting.
    static let recorder = #"""
        $lines = []
        class Anything
          def method_missing(*) = self
          def respond_to_missing?(*) = true
        end
        # A provider's settings: each assignment becomes a line "provider NAME SETTING=VALUE".
        class ProviderSettings
          def initialize(name) = @name = name
          def method_missing(setting, *arguments)
            if setting.to_s.end_with?("=")
              $lines << "provider #{@name} #{setting.to_s.chomp('=')}=#{arguments.first}"
            end
            self
          end
          def respond_to_missing?(*) = true
        end
        class VMConfig
          attr_accessor :box, :hostname
          def initialize(machine) = @machine = machine
          def synced_folder(source, target, **options) = $lines << "synced #{source} #{target} #{options[:type]}"
          def provider(name) = yield(ProviderSettings.new(name))
          def define(name)
            machine = MachineConfig.new(name)
            yield machine
            $lines << "machine #{name} hostname=#{machine.vm.hostname}"
          end
          def network(kind, **options)
            $lines << "network #{@machine} #{kind} #{options[:ip]} #{options[:netmask]} #{options[:virtualbox__intnet]}"
            libvirt = options.select { |key, _| key.to_s.start_with?("libvirt__") }.map { |key, value| "#{key.to_s.delete_prefix('libvirt__')}=#{value}" }
            $lines << "libvirt-network #{@machine} #{options[:ip]} #{libvirt.join(' ')}"
          end
          def provision(name, **options) = $lines << "provision #{@machine} #{name} #{options[:type]} #{options[:path]} #{options[:args].join(',')} #{options[:run] || 'once'}"
        end
        class MachineConfig
          attr_reader :vm
          def initialize(name) = @vm = VMConfig.new(name)
        end
        class RootConfig
          def vm = (@vm ||= VMConfig.new(nil))
        end
        module Vagrant
          def self.configure(version)
            raise "unexpected configuration version #{version}" unless version == "2"
            config = RootConfig.new
            yield config
            $lines << "box #{config.vm.box}"
          end
        end
        load ARGV[0]
        puts $lines
        """#

    struct Machine: Equatable {
        var name: String
        var addresses: [String] = []
        var networks: [String] = []
    }

    /// The machines as the testbed script describes them (`scripts/testbed hosts`).
    static func testbedMachines() async -> [Machine] {
        var machines: [Machine] = []
        for line in await Testbed.script(["hosts"]).lines {
            let fields = line.split(separator: " ").map(String.init)
            if machines.last?.name != fields[0] { machines.append(Machine(name: fields[0])) }
            machines[machines.count - 1].addresses.append(fields[2])
        }
        return machines
    }

    @Test func theMachinesAndAddressesAreTheTestbeds() async throws {
        let expected = await Self.testbedMachines()
        #expect(expected.map(\.name) == ["producer", "producers2", "consumers2", "consumer"])

        // Read without Ruby: the HOSTS table at the top.
        let text = try String(contentsOfFile: Self.vagrantfile, encoding: .utf8)
        var parsed: [Machine] = []
        for line in text.split(separator: "\n") where line.contains("{ name: \"") {
            guard let name = line.firstMatch(of: /name: "([a-z0-9]+)"/)?.1 else { continue }
            var machine = Machine(name: String(name))
            for match in line.matches(of: /\["(\d+\.\d+\.\d+\.\d+)", "([a-z0-9-]+)"\]/) {
                machine.addresses.append("\(match.1)/24")
                machine.networks.append(String(match.2))
            }
            parsed.append(machine)
        }
        #expect(parsed.map { Machine(name: $0.name, addresses: $0.addresses) } == expected)
        Self.expectOneNetworkPerSubnet(parsed)
    }

    /// Hosts on the same /24 share one VirtualBox internal network, and each /24 has its own.
    static func expectOneNetworkPerSubnet(_ machines: [Machine], sourceLocation: SourceLocation = #_sourceLocation) {
        var networkOfSubnet: [String: String] = [:]
        for machine in machines {
            #expect(machine.networks.count == machine.addresses.count, sourceLocation: sourceLocation)
            for (address, network) in zip(machine.addresses, machine.networks) {
                let subnet = address.split(separator: ".").prefix(3).joined(separator: ".")
                if let known = networkOfSubnet[subnet] {
                    #expect(known == network, "\(machine.name): \(address) on \(network), but \(subnet).0/24 is \(known)", sourceLocation: sourceLocation)
                }
                networkOfSubnet[subnet] = network
            }
        }
        #expect(Set(networkOfSubnet.values).count == networkOfSubnet.count, "\(networkOfSubnet)", sourceLocation: sourceLocation)
        #expect(networkOfSubnet.count == 3, sourceLocation: sourceLocation)
    }

    static func requireRuby() async throws {
        let ruby = await Harness.run("/bin/bash", ["-c", "command -v ruby"])
        guard ruby.status == 0 else {
            print("ruby is not installed: the Vagrantfile was checked by reading it only (.ci/run installs ruby)")
            try Test.cancel("ruby is not installed")
        }
    }

    /// The Vagrantfile evaluated by Ruby with the recorder, in a folder of its own (with prebuilt
    /// binaries in dist/ or not), with only these SCISTREAM_ variables set.
    static func evaluate(_ environment: [String: String] = [:], prebuilt: Bool = false) async throws -> Harness.Output {
        let folder = Harness.temporaryFolder("vagrant")
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = folder.appendingPathComponent("recorder.rb")
        try Self.recorder.write(to: script, atomically: true, encoding: .utf8)
        let copy = folder.appendingPathComponent("Vagrantfile")
        try FileManager.default.copyItem(atPath: vagrantfile, toPath: copy.path)
        if prebuilt {
            let dist = folder.appendingPathComponent("dist")
            try FileManager.default.createDirectory(at: dist, withIntermediateDirectories: true)
            for name in ["s2cs", "s2uc"] {
                try #require(FileManager.default.createFile(atPath: dist.appendingPathComponent(name).path, contents: Data(), attributes: [.posixPermissions: 0o755]))
            }
        }
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SCISTREAM_") }
        env.merge(environment) { _, new in new }
        return await Harness.run("/bin/bash", ["-c", "ruby \(script.path) \(copy.path)"], cwd: folder, environment: env)
    }

    @Test func evaluatedByRubyTheVagrantfileDefinesTheTestbed() async throws {
        try await Self.requireRuby()
        let syntax = await Harness.run("/bin/bash", ["-c", "ruby -c \(Self.vagrantfile)"])
        #expect(syntax.stdout == "Syntax OK\n", "\(syntax.stderr)")

        let result = try await Self.evaluate()
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.lines
        #expect(lines.contains("box debian/bookworm64"), "\(lines)")
        #expect(lines.contains { $0.hasPrefix("synced . /vagrant rsync") }, "\(lines)")

        var machines: [Machine] = []
        for line in lines where line.hasPrefix("network ") {
            let fields = line.split(separator: " ").map(String.init)
            #expect(fields.count == 6 && fields[2] == "private_network" && fields[4] == "255.255.255.0", "\(line)")
            guard fields.count == 6 else { continue }
            if machines.last?.name != fields[1] { machines.append(Machine(name: fields[1])) }
            machines[machines.count - 1].addresses.append("\(fields[3])/24")
            machines[machines.count - 1].networks.append(fields[5])
        }
        let expected = await Self.testbedMachines()
        #expect(machines.map { Machine(name: $0.name, addresses: $0.addresses) } == expected)
        Self.expectOneNetworkPerSubnet(machines)

        for machine in expected {
            #expect(lines.contains("machine \(machine.name) hostname=\(machine.name)"))
            // Built once by scripts/provision.sh, routes set on every boot.
            #expect(lines.contains("provision \(machine.name) build shell scripts/provision.sh \(machine.name) once"), "\(lines)")
            #expect(lines.contains("provision \(machine.name) routes shell scripts/provision.sh --routes-only,\(machine.name) always"), "\(lines)")
        }
    }

    /// Under libvirt each of the three networks is isolated (no host address, no DHCP, no
    /// forwarding), under the same name as VirtualBox's internal network; both providers get the
    /// same size, 3 GB to build Swift in the machine, 1 GB with prebuilt binaries in dist/.
    @Test func bothProvidersIsolatedAndSized() async throws {
        try await Self.requireRuby()
        for (prebuilt, memory) in [(false, 3072), (true, 1024)] {
            let result = try await Self.evaluate(prebuilt: prebuilt)
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.lines
            for provider in ["virtualbox", "libvirt"] {
                #expect(lines.contains("provider \(provider) memory=\(memory)"), "prebuilt \(prebuilt): \(lines)")
                #expect(lines.contains("provider \(provider) cpus=2"), "\(lines)")
            }
            #expect(lines.contains("provider libvirt driver=kvm"), "\(lines)")

            var libvirtNetworks: [String: String] = [:]
            for line in lines where line.hasPrefix("libvirt-network ") {
                let fields = line.split(separator: " ").map(String.init)
                #expect(fields.count == 6, "\(line)")
                guard fields.count == 6 else { continue }
                #expect(Array(fields[4...]) == ["forward_mode=veryisolated", "dhcp_enabled=false"], "\(line)")
                libvirtNetworks[fields[2]] = fields[3].replacingOccurrences(of: "network_name=", with: "")
            }
            // The libvirt network of each address is its VirtualBox internal network.
            for line in lines where line.hasPrefix("network ") {
                let fields = line.split(separator: " ").map(String.init)
                guard fields.count == 6 else { continue }
                #expect(libvirtNetworks[fields[3]] == fields[5], "\(fields[3]): libvirt \(libvirtNetworks[fields[3]] ?? "none"), VirtualBox \(fields[5])")
            }
            #expect(libvirtNetworks.count == 6, "\(libvirtNetworks)")
        }
    }

    @Test func theBoxDriverMemoryAndCPUsCanBeChosen() async throws {
        try await Self.requireRuby()
        let emulated = try await Self.evaluate(["SCISTREAM_BOX": "scistream/bookworm", "SCISTREAM_LIBVIRT_DRIVER": "qemu"], prebuilt: true)
        #expect(emulated.status == 0, "\(emulated.stderr)")
        #expect(emulated.lines.contains("box scistream/bookworm"), "\(emulated.lines)")
        #expect(emulated.lines.contains("provider libvirt driver=qemu"), "\(emulated.lines)")
        #expect(emulated.lines.contains("provider libvirt cpus=1"), "software emulation: one CPU per machine by default: \(emulated.lines)")
        #expect(emulated.lines.contains("provider libvirt memory=1024"), "\(emulated.lines)")

        let chosen = try await Self.evaluate(["SCISTREAM_VM_MEMORY": "2048", "SCISTREAM_VM_CPUS": "4", "SCISTREAM_LIBVIRT_DRIVER": "qemu"])
        #expect(chosen.status == 0, "\(chosen.stderr)")
        for provider in ["virtualbox", "libvirt"] {
            #expect(chosen.lines.contains("provider \(provider) memory=2048"), "\(chosen.lines)")
            #expect(chosen.lines.contains("provider \(provider) cpus=4"), "\(chosen.lines)")
        }
        #expect(chosen.lines.contains("box debian/bookworm64"), "\(chosen.lines)")

        // Bad values stop Vagrant before it does anything, naming the variable and the value.
        let bad = [
            ("SCISTREAM_LIBVIRT_DRIVER", "xen", "kvm or qemu"),
            ("SCISTREAM_VM_MEMORY", "1G", "a size in MB (e.g. 1024)"),
            ("SCISTREAM_VM_CPUS", "0", "a number of CPUs"),
            ("SCISTREAM_BOX", "my box", "a box name"),
        ]
        for (name, value, meaning) in bad {
            let refused = try await Self.evaluate([name: value])
            #expect(refused.status != 0, "\(name)=\(value) was accepted: \(refused.stdout)")
            #expect(refused.stderr.contains("Error: \(name)=\"\(value)\" is not \(meaning): unset it or fix it"), "\(refused.stderr)")
            #expect(!refused.stdout.contains("machine "), "\(name)=\(value): machines were defined anyway")
        }
    }

    /// What provisioning installs with prebuilt binaries is what scripts/make-box preinstalls: a
    /// box made by it needs no download at `vagrant up`.
    @Test func theBoxHasEverythingProvisioningInstalls() async throws {
        let provision = try String(contentsOfFile: Self.provision, encoding: .utf8)
        let makeBox = try String(contentsOf: Harness.repoRoot.appendingPathComponent("scripts/make-box"), encoding: .utf8)
        // Both read the same groups of the one list, scripts/packages: run and box.
        let selection = "awk '$1 == \"run\" || $1 == \"box\" { print $2 }'"
        #expect(provision.contains("runtime_packages < <(\(selection) \"$source_dir/scripts/packages\" | sort -u)"))
        #expect(makeBox.contains("RUNTIME=$(\(selection) \"$(dirname \"$0\")/packages\" | sort -u | tr '\\n' ' ')"))
        let list = try String(contentsOf: Harness.repoRoot.appendingPathComponent("scripts/packages"), encoding: .utf8)
        var runtime: Set<String> = []
        for line in list.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count >= 2 && (words[0] == "run" || words[0] == "box") { runtime.insert(String(words[1])) }
        }
        for package in ["haproxy", "nginx-light", "libnginx-mod-stream", "stunnel4", "iperf3", "tcpdump", "libcurl4", "libssl3"] {
            #expect(runtime.contains(package), "\(package)")
        }
        // Prebuilt binaries come from dist/, which scripts/build-static fills.
        #expect(provision.contains("install -m 755 \"$source_dir/dist/s2uc\" \"$source_dir/dist/s2cs\""))
        let buildStatic = try String(contentsOf: Harness.repoRoot.appendingPathComponent("scripts/build-static"), encoding: .utf8)
        #expect(buildStatic.contains("OUTPUT=\"$ROOT/dist\""))
        #expect(buildStatic.contains("--static-swift-stdlib"))

        // The helper scripts refuse what they do not know, with the usage.
        for (script, arguments) in [("scripts/make-box", ["--bogus"]), ("scripts/build-static", ["--bogus"]), ("scripts/libvirt-host", ["restart"])] {
            let path = Harness.repoRoot.appendingPathComponent(script).path
            let syntax = await Harness.run("/bin/bash", ["-n", path])
            #expect(syntax.status == 0, "bash -n \(script): \(syntax.stderr)")
            let refused = await Harness.run(path, arguments)
            #expect(refused.status == 64, "\(script) \(arguments): \(refused.status) \(refused.stderr)")
            #expect(refused.stderr.hasPrefix("Error: unknown ") && refused.stderr.contains("Usage: \(script) "), "\(refused.stderr)")
        }
    }

    @Test func provisioningParsesAndSetsTheTestbedsRoutes() async throws {
        for script in ["scripts/provision.sh", "scripts/testbed", "scripts/demo", "certs/make-dev-cert.sh", "certs/make-testbed-certs.sh"] {
            let syntax = await Harness.run("/bin/bash", ["-n", Harness.repoRoot.appendingPathComponent(script).path])
            #expect(syntax.status == 0, "bash -n \(script): \(syntax.stderr)")
        }
        let routes = await Harness.run("/bin/bash", [Self.provision, "--print-routes"])
        #expect(routes.status == 0)
        #expect(routes.stdout == (await Testbed.script(["routes"])).stdout)
        #expect(routes.stdout == TestbedSuites.TestbedScriptTests.expectedRoutes)

        let text = try String(contentsOfFile: Self.provision, encoding: .utf8)
        // It installs the toolchain, builds, and puts the commands on the PATH.
        #expect(text.contains("https://download.swift.org/swift-$swift_version-release/debian12/"))
        #expect(text.contains("swift_version=${SWIFT_VERSION:-6.3.1}"))
        #expect(text.contains("gpg --batch --verify"))
        #expect(text.contains("install -m 755 \"$bin/s2uc\" \"$bin/s2cs\" \"$source_dir/certs/make-dev-cert.sh\" /usr/local/bin/"))
        // The packages are groups run and box of the one list (scripts/packages), and build's plus the
        // toolchain's when it builds in the machine.
        #expect(text.contains("awk '$1 == \"run\" || $1 == \"box\" { print $2 }' \"$source_dir/scripts/packages\""))
        #expect(text.contains("awk '$1 == \"build\" { print $2 }' \"$source_dir/scripts/packages\""))
        let box = try String(contentsOf: Harness.repoRoot.appendingPathComponent("scripts/make-box"), encoding: .utf8)
        #expect(box.contains("awk '$1 == \"run\" || $1 == \"box\" { print $2 }' \"$(dirname \"$0\")/packages\""))

        let unknown = await Harness.run("/bin/bash", [Self.provision, "router"])
        #expect(unknown.status == 64)
        #expect(unknown.stderr.hasPrefix("Error: unknown host 'router'"))
    }

    @Test func testbedCertificatesNameEachGatewaysAddresses() async throws {
        let folder = Harness.temporaryFolder("testbed-certs")
        defer { try? FileManager.default.removeItem(at: folder) }
        let made = await Harness.run("/bin/bash", [Harness.repoRoot.appendingPathComponent("certs/make-testbed-certs.sh").path, "-o", folder.path])
        #expect(made.status == 0, "\(made.stderr)")
        let expected = [
            "producers2": ("192.168.10.11", "IP Address:192.168.10.11, IP Address:192.168.20.10"),
            "consumers2": ("192.168.30.10", "IP Address:192.168.30.10, IP Address:192.168.20.11"),
        ]
        for (gateway, (commonName, names)) in expected {
            let crt = folder.appendingPathComponent("\(gateway)/server.crt").path
            let shown = await Harness.run("/bin/bash", ["-c", "openssl x509 -in \(crt) -noout -subject -ext subjectAltName"])
            #expect(shown.lines == ["subject=CN = \(commonName)", "X509v3 Subject Alternative Name: ", "    \(names)"], "\(shown.stdout)")
            let key = folder.appendingPathComponent("\(gateway)/server.key").path
            let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            // certs/README.md says: an ECDSA P-256 key, valid 365 days.
            let keyText = await Harness.run("/bin/bash", ["-c", "openssl pkey -in \(key) -noout -text"])
            #expect(keyText.stdout.contains("ASN1 OID: prime256v1"), "\(keyText.stdout.prefix(200))")
            let days = await Harness.run("/bin/bash", ["-c", "openssl x509 -in \(crt) -noout -checkend \(364 * 86400) && ! openssl x509 -in \(crt) -noout -checkend \(366 * 86400)"])
            #expect(days.status == 0, "not valid for 365 days: \(days.stdout)")
        }
        let bad = await Harness.run("/bin/bash", [Harness.repoRoot.appendingPathComponent("certs/make-testbed-certs.sh").path, "-o", folder.path, "producer"])
        #expect(bad.status == 64)
        #expect(bad.stderr == "Error: unknown gateway 'producer': use producers2 or consumers2\n")
    }
}
