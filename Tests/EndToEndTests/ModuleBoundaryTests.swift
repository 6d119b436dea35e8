import Foundation
import Testing

/// The shape of the package: s2uc links neither the server nor the data plane, and no module holds
/// more than a quarter of the source.
@Suite struct ModuleBoundaryTests {
    /// Each target's direct dependencies, as SwiftPM reads Package.swift (`swift package dump-package`,
    /// with a scratch path of its own so that it does not wait for the running test's build lock).
    static func dependencies() throws -> [String: [String]] {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("scistream-dump-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        // The swift of PATH: the one running these tests (scripts/test puts the toolchain first).
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let swift = path.split(separator: ":").map { "\($0)/swift" }.first { FileManager.default.isExecutableFile(atPath: $0) } ?? "swift"
        let output = Harness.runSync(swift, ["package", "--package-path", Harness.repoRoot.path, "--scratch-path", scratch.path, "dump-package"])
        guard output.status == 0, let object = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any],
              let targets = object["targets"] as? [[String: Any]] else {
            throw HarnessError("swift package dump-package failed: \(output.stderr)")
        }
        var result: [String: [String]] = [:]
        for target in targets {
            guard let name = target["name"] as? String else { continue }
            let dependencies = (target["dependencies"] as? [[String: Any]] ?? []).compactMap { dependency -> String? in
                (dependency.values.first as? [Any])?.first as? String
            }
            result[name] = dependencies
        }
        return result
    }

    static func closure(of target: String, in graph: [String: [String]]) -> Set<String> {
        var seen: Set<String> = []
        var todo = [target]
        while let next = todo.popLast() {
            for dependency in graph[next] ?? [] where seen.insert(dependency).inserted { todo.append(dependency) }
        }
        return seen
    }

    @Test func s2ucLinksNeitherTheServerNorTheDataPlane() throws {
        let graph = try Self.dependencies()
        let client = Self.closure(of: "s2uc", in: graph)
        #expect(client.contains("SciStreamClient"), "\(client)")
        #expect(client.isDisjoint(with: ["SciStreamServer", "SciStreamMetrics", "SciStreamDataPlane", "SciStreamPolicy", "SciStreamGRPC"]), "\(client.sorted())")
        let server = Self.closure(of: "s2cs", in: graph)
        #expect(server.contains("SciStreamServer") && !server.contains("SciStreamClient"), "\(server.sorted())")
    }

    @Test func noModuleHoldsMoreThanAQuarterOfTheSource() throws {
        let sources = Harness.repoRoot.appendingPathComponent("Sources")
        var lines: [String: Int] = [:]
        for module in try FileManager.default.contentsOfDirectory(atPath: sources.path) {
            guard let walker = FileManager.default.enumerator(at: sources.appendingPathComponent(module), includingPropertiesForKeys: nil) else { continue }
            for case let file as URL in walker where file.pathExtension == "swift" {
                lines[module, default: 0] += try String(contentsOf: file, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).count
            }
        }
        let total = lines.values.reduce(0, +)
        #expect(total > 10_000, "\(lines)")
        for (module, count) in lines {
            #expect(count * 4 <= total, "\(module): \(count) of \(total) lines")
        }
    }
}
