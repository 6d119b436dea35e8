import Foundation
import Testing

/// The one install list, scripts/packages, against what the project starts: a package that is only
/// installed by hand on a development machine (dnsmasq-base, once) must fail here, not on a fresh
/// machine in CI.
@Suite struct PackageListTests {

    /// Groups the suite needs; vm only when the VM tutorial runs.
    static var groups: [String] {
        ["build", "run", "test"] + (ProcessInfo.processInfo.environment["SCISTREAM_VAGRANT_TESTS"] == "1" ? ["vm"] : [])
    }

    /// Program paths the tests and scripts name literally (`"/usr/sbin/nft"`, `/usr/bin/systemd-analyze`).
    /// Made-up command lines that are never run are left out by name; the files about the VMs (whose
    /// paths are the guests' or the VM host's) count only with the vm group.
    static func programPathsInSources() throws -> Set<String> {
        let neverRun: Set<String> = ["/usr/bin/vim"]  // ProxyConfigTests: a command line that must not count as a proxy
        let notSources: Set<String> = ["packages", "PackageListTests.swift"]
        let vmOnly: Set<String> = ["VagrantTutorialTests.swift", "make-box", "provision.sh", "libvirt-host"]
        let withVM = groups.contains("vm")
        let pattern = try NSRegularExpression(pattern: #"/usr/s?bin/[a-z0-9][a-z0-9._+-]*"#)
        var paths: Set<String> = []
        for folder in ["Tests", "scripts", "bench", "certs"] {
            let base = Harness.repoRoot.appendingPathComponent(folder)
            guard let walker = FileManager.default.enumerator(at: base, includingPropertiesForKeys: nil) else { continue }
            for case let file as URL in walker where !file.path.contains("/.build") && !notSources.contains(file.lastPathComponent) {
                if vmOnly.contains(file.lastPathComponent) && !withVM { continue }
                // Written into the guest's root file system, never run on this host.
                let guestOnly: Set<String> = ["/usr/sbin/policy-rc.d", "/usr/bin/swift"]
                guard let text = try? String(contentsOf: file, encoding: .utf8) else { continue }
                for match in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                    let path = String(text[Range(match.range, in: text)!])
                    if !neverRun.contains(path) && !guestOnly.contains(path) { paths.insert(path) }
                }
            }
        }
        return paths
    }

    @Test func everyFileTheSuiteStartsIsBroughtInByTheInstallList() async throws {
        let paths = try Self.programPathsInSources()
        #expect(paths.contains("/usr/sbin/nft") && paths.contains("/usr/bin/systemd-analyze"), "\(paths.sorted())")
        let arguments = paths.sorted().flatMap { ["--also", $0] } + Self.groups
        let checked = await Harness.run(Harness.repoRoot.appendingPathComponent("scripts/check-packages").path, arguments, timeout: .seconds(120))
        #expect(checked.status == 0, "scripts/check-packages \(Self.groups.joined(separator: " ")):\n\(checked.stdout)\(checked.stderr)")
    }

    @Test func theCheckCatchesAFileOnlyARecommendBringsIn() async throws {
        // dnsmasq-base is only a Recommends of libvirt-daemon: a list without it must fail the check
        // for /usr/sbin/dnsmasq, whether or not this machine has it installed.
        let folder = Harness.temporaryFolder("packages")
        defer { try? FileManager.default.removeItem(at: folder) }
        let scripts = folder.appendingPathComponent("scripts")
        try FileManager.default.createDirectory(at: scripts, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Harness.repoRoot.appendingPathComponent("scripts/check-packages"), to: scripts.appendingPathComponent("check-packages"))
        let list = try String(contentsOf: Harness.repoRoot.appendingPathComponent("scripts/packages"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("vm     dnsmasq-base") }
            .joined(separator: "\n") + "vm     libvirt-daemon-system /usr/sbin/dnsmasq\n"
        try list.write(to: scripts.appendingPathComponent("packages"), atomically: true, encoding: .utf8)
        let checked = await Harness.run(scripts.appendingPathComponent("check-packages").path, ["vm"], timeout: .seconds(120))
        #expect(checked.status == 1, "\(checked.stdout)\(checked.stderr)")
        let line = checked.stdout.split(separator: "\n").first { $0.contains("/usr/sbin/dnsmasq") }
        #expect(line.map { $0.hasPrefix("not brought in: /usr/sbin/dnsmasq belongs to dnsmasq-base") || $0.hasPrefix("missing: /usr/sbin/dnsmasq") } == true,
                "\(checked.stdout)")
    }

    @Test func demoTestsAndCIInstallFromTheOneList() throws {
        for script in ["scripts/demo", "scripts/test", ".ci/run", "scripts/make-box", "scripts/provision.sh"] {
            let text = try String(contentsOf: Harness.repoRoot.appendingPathComponent(script), encoding: .utf8)
            #expect(text.contains("install-deps") || text.contains("scripts/packages") || text.contains("/packages\""), "\(script) does not install from scripts/packages")
            // No second list: no apt-get install line naming one of the proxies.
            let lists = text.split(separator: "\n").filter { $0.contains("apt-get install") && $0.contains("haproxy") }
            #expect(lists.isEmpty, "\(script) names packages of its own: \(lists)")
        }
        let readme = try String(contentsOf: Harness.repoRoot.appendingPathComponent("README.md"), encoding: .utf8)
        #expect(readme.contains("scripts/demo ") && readme.contains("scripts/test "), "the README's two commands")
        let ci = try String(contentsOf: Harness.repoRoot.appendingPathComponent(".ci/run"), encoding: .utf8)
        #expect(ci.split(separator: "\n").last == "scripts/test", ".ci/run ends with the README's test command")
    }

    /// .ci/run spells its packages out (CI_PACKAGES, VM_PACKAGES): they are exactly the list's groups
    /// build, run and test, and vm (.ci/run also checks this before it installs anything).
    @Test func ciSpellsOutExactlyTheListsPackages() async throws {
        let script = """
            cd '\(Harness.repoRoot.path)'
            eval "$(sed -n '/^CI_PACKAGES=(/,/^  qemu-utils/p' .ci/run)"
            printf '%s\\n' "${CI_PACKAGES[@]}" | sort -u | tr '\\n' ' '; echo
            grep -E '^(build|run|test)[[:space:]]' scripts/packages | awk '{ print $2 }' | sort -u | tr '\\n' ' '; echo
            printf '%s\\n' "${VM_PACKAGES[@]}" | sort -u | tr '\\n' ' '; echo
            grep -E '^vm[[:space:]]' scripts/packages | awk '{ print $2 }' | sort -u | tr '\\n' ' '; echo
            """
        let output = await Harness.run("/bin/bash", ["-c", script])
        let lines = output.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        try #require(lines.count >= 4, "\(output.stdout) \(output.stderr)")
        #expect(!lines[0].isEmpty && lines[0] == lines[1], "CI_PACKAGES: \(lines[0])\nscripts/packages: \(lines[1])")
        #expect(!lines[2].isEmpty && lines[2] == lines[3], "VM_PACKAGES: \(lines[2])\nscripts/packages: \(lines[3])")
    }
}
