import Foundation
import Testing

/// deploy/kubernetes/: every manifest validated offline against the Kubernetes 1.30 schemas by
/// `kubernetes-validate` (PyPI; it bundles the schemas, so no network; .ci/run installs it into the
/// `python3` on PATH, which this test runs), and the DaemonSet's s2cs arguments checked against
/// the flags the built s2cs declares in `--help`, their `$(VAR)`s against the ConfigMap and env.
@Suite struct KubernetesManifestTests {
    static let folder = Harness.repoRoot.appendingPathComponent("deploy/kubernetes")
    static let kubernetesVersion = "1.30.0"

    static func manifests() throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "yaml" }.sorted { $0.path < $1.path }
    }

    static func validate(_ path: String) async -> Harness.Output {
        await Harness.run("/usr/bin/env", ["python3", "-m", "kubernetes_validate", "--strict", "--no-warn",
                                           "-k", kubernetesVersion, path])
    }

    @Test func everyManifestValidatesAgainstTheKubernetesSchemas() async throws {
        let files = try Self.manifests()
        #expect(files.map(\.lastPathComponent) == ["configmap.yaml", "daemonset.yaml", "namespace.yaml"])
        for file in files {
            let result = await Self.validate(file.path)
            #expect(result.status == 0, "kubernetes-validate \(file.lastPathComponent) (install it with 'python3 -m pip install kubernetes-validate'):\n\(result.stdout)\n\(result.stderr)")
        }
        // The validator does refuse a wrong manifest: the DaemonSet with hostNetwork as a string.
        let scratch = Harness.temporaryFolder("kubernetes")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let daemonSet = try String(contentsOf: Self.folder.appendingPathComponent("daemonset.yaml"), encoding: .utf8)
        #expect(daemonSet.contains("hostNetwork: true\n"))
        let broken = scratch.appendingPathComponent("daemonset.yaml")
        try daemonSet.replacingOccurrences(of: "hostNetwork: true\n", with: "hostNetwork: \"yes\"\n").write(to: broken, atomically: true, encoding: .utf8)
        let refused = await Self.validate(broken.path)
        #expect(refused.status != 0 && (refused.stdout + refused.stderr).contains("hostNetwork"), "\(refused.stdout)\n\(refused.stderr)")
    }

    /// The `- ` items of the first `args:` list in `text`.
    static func argsList(_ text: String) -> [String] {
        let lines = text.split(separator: "\n").map(String.init)
        guard let start = lines.firstIndex(where: { $0.trimmingCharacters(in: .whitespaces) == "args:" }) else { return [] }
        return lines[(start + 1)...].prefix { $0.trimmingCharacters(in: .whitespaces).hasPrefix("- ") }
            .map { String($0.trimmingCharacters(in: .whitespaces).dropFirst(2)) }
    }

    /// Whether `text` has `flag` as a whole flag (`--port` is not found in `--port-range`).
    static func mentions(_ text: String, _ flag: String) -> Bool {
        var rest = Substring(text)
        while let range = rest.range(of: flag) {
            let next = rest[range.upperBound...].first
            if next.map({ !($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) ?? true { return true }
            rest = rest[range.upperBound...]
        }
        return false
    }

    @Test func theDaemonSetsArgumentsAreFlagsS2csAcceptsWithDefinedVariables() async throws {
        let daemonSet = try String(contentsOf: Self.folder.appendingPathComponent("daemonset.yaml"), encoding: .utf8)
        let configMap = try String(contentsOf: Self.folder.appendingPathComponent("configmap.yaml"), encoding: .utf8)
        let args = Self.argsList(daemonSet)
        #expect(args.count >= 8, "\(args)")
        let help = await Harness.run(Harness.s2cs, ["--help"])
        #expect(help.status == 0, "\(help.stderr)")
        // The variables the container defines: the ConfigMap's keys and its own env names.
        let defined = Set((configMap + daemonSet).split(separator: "\n").compactMap { line -> String? in
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("- name: S2CS_") { return String(trimmed.dropFirst("- name: ".count)) }
            if trimmed.hasPrefix("S2CS_"), let colon = trimmed.firstIndex(of: ":") { return String(trimmed[..<colon]) }
            return nil
        })
        for arg in args {
            #expect(arg.hasPrefix("--") && arg.contains("="), "\(arg): give each flag as --flag=value")
            let flag = String(arg.prefix { $0 != "=" })
            #expect(Self.mentions(help.stdout, flag), "\(flag) is not in 's2cs --help'")
            for reference in arg.split(separator: "$(").dropFirst() {
                let name = String(reference.prefix { $0 != ")" })
                #expect(defined.contains(name), "\(arg): $(\(name)) is neither a ConfigMap key nor an env name")
            }
        }
        // The image is the one scripts/build-image names: scistream:<the version s2cs prints>.
        let version = await Harness.run(Harness.s2cs, ["--version"])
        let number = version.stdout.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? ""
        let images = daemonSet.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("image: ") }
        #expect(!number.isEmpty && images.count == 2 && images.allSatisfy { $0 == "image: scistream:\(number)" }, "\(images) \(version.stdout)")
        // The files s2cs is given are the ones the init container writes.
        for path in ["/run/scistream/client-secret", "/run/scistream/server.crt", "/run/scistream/server.key"] {
            #expect(args.contains { $0.hasSuffix("=" + path) } && daemonSet.contains(" " + path), "\(path)")
        }
    }
}
