import Foundation
import Testing
import TestPorts
#if canImport(Glibc)
import Glibc
#endif

/// deploy/systemd/s2cs.service: systemd's own checks (`systemd-analyze verify`, and the offline
/// `systemd-analyze security` score that docs/deployment.md records), and its ExecStart line, expanded
/// as systemd expands it, starting the real s2cs.
@Suite struct SystemdUnitTests {
    static let analyze = "/usr/bin/systemd-analyze"
    static let unit = Harness.repoRoot.appendingPathComponent("deploy/systemd/s2cs.service")

    /// The unit with ExecStart pointing at the built s2cs (verify checks that the binary exists).
    func unitCopy(in folder: URL) throws -> String {
        let text = try String(contentsOf: Self.unit, encoding: .utf8)
        #expect(text.contains("ExecStart=/usr/local/bin/s2cs "))
        let path = folder.appendingPathComponent("s2cs.service").path
        try text.replacingOccurrences(of: "/usr/local/bin/s2cs", with: Harness.s2cs).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: analyze), "systemd-analyze is not installed (apt-get install systemd)"))
    func systemdAnalyzeVerifiesTheUnitAndScoresItsExposure() async throws {
        let folder = Harness.temporaryFolder("systemd")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = try unitCopy(in: folder)
        let verify = await Harness.run(Self.analyze, ["verify", path])
        #expect(verify.status == 0 && verify.stderr.isEmpty && verify.stdout.isEmpty, "\(verify.stdout)\n\(verify.stderr)")

        // With the drop-in that turns authentication off (found in s2cs.service.d/ beside the unit).
        let dropIns = folder.appendingPathComponent("with-drop-in/s2cs.service.d")
        try FileManager.default.createDirectory(at: dropIns, withIntermediateDirectories: true)
        let withDropIn = folder.appendingPathComponent("with-drop-in/s2cs.service").path
        try FileManager.default.copyItem(atPath: path, toPath: withDropIn)
        let dropIn = try String(contentsOf: Self.unit.deletingLastPathComponent().appendingPathComponent("no-authentication.conf"), encoding: .utf8)
        #expect(dropIn.contains("ExecStart=/usr/local/bin/s2cs "))
        try dropIn.replacingOccurrences(of: "/usr/local/bin/s2cs", with: Harness.s2cs)
            .write(to: dropIns.appendingPathComponent("no-authentication.conf"), atomically: true, encoding: .utf8)
        let verifyDropIn = await Harness.run(Self.analyze, ["verify", withDropIn])
        #expect(verifyDropIn.status == 0 && verifyDropIn.stderr.isEmpty, "\(verifyDropIn.stdout)\n\(verifyDropIn.stderr)")

        let security = await Harness.run(Self.analyze, ["security", "--offline=true", path])
        #expect(security.status == 0, "\(security.stderr)")
        let overall = security.lines.last { $0.contains("Overall exposure level") } ?? ""
        let score = overall.split(separator: ":").last?.split(separator: " ").first.flatMap { Double($0) }
        #expect(score != nil && score! <= 2.0, "\(overall)")
        // The figure docs/deployment.md records is the one systemd gives today.
        let docs = try String(contentsOf: Harness.repoRoot.appendingPathComponent("docs/deployment.md"), encoding: .utf8)
        if let score {
            #expect(docs.contains("Overall exposure level for s2cs.service: \(String(format: "%.1f", score))"), "docs/deployment.md records \(score)")
        }
    }

    /// ExecStart, with the environment file's variables and systemd's CREDENTIALS_DIRECTORY and
    /// STATE_DIRECTORY filled in as systemd does (`${X}` as one word, `$X` split on spaces): s2cs
    /// accepts every flag, reads the credentials and serves.
    @Test func theExecStartLineStartsS2cs() async throws {
        let folder = Harness.temporaryFolder("systemd-exec")
        defer { try? FileManager.default.removeItem(at: folder) }
        let credentials = folder.appendingPathComponent("credentials"), state = folder.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        chmod(state.path, 0o700)
        for (source, name) in [(Harness.certificates.crt, "server.crt"), (Harness.certificates.key, "server.key")] {
            try FileManager.default.copyItem(atPath: source, toPath: credentials.appendingPathComponent(name).path)
        }
        _ = FileManager.default.createFile(atPath: credentials.appendingPathComponent("client-secret").path, contents: Data("xyz\n".utf8),
                                           attributes: [.posixPermissions: 0o400])
        let ports = try PortBlock.reserve(2)
        let environment = ["S2CS_LISTENER_IP": "127.0.0.1", "S2CS_CLIENT_ID": "abc",
                           "S2CS_OPTIONS": "--port=0 --bind=127.0.0.1 --type=Mock --port-range=\(ports)",
                           "CREDENTIALS_DIRECTORY": credentials.path, "STATE_DIRECTORY": state.path]
        // The shipped environment file names the same variables.
        let envFile = try String(contentsOf: Harness.repoRoot.appendingPathComponent("deploy/systemd/s2cs.env"), encoding: .utf8)
        for name in ["S2CS_LISTENER_IP", "S2CS_CLIENT_ID", "S2CS_OPTIONS"] {
            #expect(envFile.contains("\n\(name)="), "s2cs.env sets \(name)")
        }

        let text = try String(contentsOf: Self.unit, encoding: .utf8).replacingOccurrences(of: "\\\n", with: " ")
        let execStart = try #require(text.split(separator: "\n").first { $0.hasPrefix("ExecStart=") }).dropFirst("ExecStart=".count)
        var words: [String] = []
        for word in execStart.split(separator: " ") {
            if word.hasPrefix("$") && !word.hasPrefix("${") {
                words += (environment[String(word.dropFirst())] ?? "").split(separator: " ").map(String.init)
                continue
            }
            var expanded = String(word)
            for (name, value) in environment { expanded = expanded.replacingOccurrences(of: "${\(name)}", with: value) }
            #expect(!expanded.contains("$"), "unexpanded variable in \(word)")
            words.append(expanded)
        }
        #expect(words.first == "/usr/local/bin/s2cs")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.s2cs)
        process.arguments = Array(words.dropFirst())
        let out = folder.appendingPathComponent("out"), err = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.environment = ["PATH": "/usr/bin:/bin"]  // systemd passes only what the unit sets
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        try await waitUntil("s2cs started from the unit's ExecStart prints its address") {
            ((try? String(contentsOf: out, encoding: .utf8)) ?? "").hasPrefix("s2cs listening on 127.0.0.1:") || !process.isRunning
        }
        let log = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        #expect(process.isRunning, "s2cs exited: \(log)")
        #expect(log.contains("authentication is on"), "\(log)")
        #expect(log.contains("folder=\(state.path)/sessions"), "\(log)")
        // The unit's stop: SIGTERM to s2cs, which exits 0 through its own shutdown.
        kill(process.processIdentifier, SIGTERM)
        try await waitUntil("s2cs exits on SIGTERM") { !process.isRunning }
        #expect(process.terminationStatus == 0)
        #expect(((try? String(contentsOf: err, encoding: .utf8)) ?? "").contains("s2cs stopped"))
    }
}
