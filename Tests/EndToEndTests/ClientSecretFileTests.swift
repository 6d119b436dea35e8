import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamAuth
import FakeGlobusAuth

/// `s2cs --client-secret-file`: the client secret from a private file (as systemd's LoadCredential
/// hands it over), checked against a fake Globus Auth; and every way the file can be wrong.
@Suite struct ClientSecretFileTests {
    let fake: FakeGlobusAuth
    let folder = Harness.temporaryFolder("secret")

    init() throws { fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz") }

    func writeSecret(_ text: String, mode: mode_t = 0o600, name: String = "client-secret") -> String {
        let path = folder.appendingPathComponent(name).path
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        chmod(path, mode)
        return path
    }

    func s2cs(_ arguments: [String]) async -> Harness.Output {
        await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock",
                                         "--config_folder", folder.appendingPathComponent("s2cs").path] + arguments)
    }

    /// With the secret from the file, s2cs checks tokens with it: the right secret lets a request in,
    /// a wrong one is refused by Globus Auth (so the file's content, not a default, was used).
    @Test func theSecretFromTheFileIsTheOneSentToGlobusAuth() async throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let home = folder.appendingPathComponent("home")
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let store = TokenStore(folder: home.path + "/.scistream")
        var file = TokenFile()
        file.tokens["abc"] = StoredToken(accessToken: token, refreshToken: nil, expiresAt: Int(Date().timeIntervalSince1970) + 3600,
                                         resourceServer: "abc", scope: GlobusAuth.scistreamScope("abc"))
        try store.save(file)
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = home.path
        environment["GLOBUS_SDK_SERVICE_URL_AUTH"] = fake.baseURL

        for (secret, accepted) in [("xyz\n", true), ("not-the-secret", false)] {
            let path = writeSecret(secret, name: "secret-\(accepted)")
            let daemon = try await Daemon(extra: ["--client-id", "abc", "--client-secret-file", path],
                                          environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": fake.baseURL])
            defer { daemon.stop() }
            #expect(daemon.log.contains("authentication is on"), "\(daemon.log)")
            let commandLine = String(decoding: FileManager.default.contents(atPath: "/proc/\(daemon.pid)/cmdline") ?? Data(), as: UTF8.self)
            #expect(commandLine.contains("--client-secret-file") && !commandLine.contains(secret.trimmingCharacters(in: .newlines)),
                    "the secret stays out of ps: \(commandLine)")
            let list = await Harness.run(Harness.s2uc, ["list", "--scope", "abc"] + daemon.clientArguments, environment: environment)
            if accepted {
                #expect(list.status == 0, "\(list.stdout)\n\(list.stderr)")
            } else {
                #expect(list.status == 1)
                #expect(list.stderr.contains("HTTP 401: the credentials were refused"), "\(list.stderr)")
            }
        }
    }

    @Test func aWrongSecretFileIsAUsageErrorThatSaysWhatToDo() async throws {
        defer { try? FileManager.default.removeItem(at: folder) }
        let open = writeSecret("xyz\n", mode: 0o644, name: "open")
        let group = writeSecret("xyz\n", mode: 0o640, name: "group")
        let empty = writeSecret("", name: "empty")
        let blank = writeSecret("\n", name: "blank")
        let twoLines = writeSecret("xyz\nabc\n", name: "two")
        let missing = folder.appendingPathComponent("missing").path
        let cases: [([String], String)] = [
            (["--client-id", "abc", "--client-secret-file", open],
             "Error: --client-secret-file \(open) is readable by other users (mode 644): make it private with 'chmod 600 \(open)'"),
            (["--client-id", "abc", "--client-secret-file", group],
             "Error: --client-secret-file \(group) is readable by other users (mode 640): make it private with 'chmod 600 \(group)'"),
            (["--client-id", "abc", "--client-secret-file", empty],
             "Error: --client-secret-file \(empty) is empty: put the Globus Auth client secret in it, or leave out --client-id and the secret to run without authentication"),
            (["--client-id", "abc", "--client-secret-file", blank],
             "Error: --client-secret-file \(blank) is empty: put the Globus Auth client secret in it, or leave out --client-id and the secret to run without authentication"),
            (["--client-id", "abc", "--client-secret-file", twoLines],
             "Error: --client-secret-file \(twoLines) holds more than one line: it must hold only the client secret"),
            (["--client-id", "abc", "--client-secret-file", missing],
             "Error: cannot read --client-secret-file \(missing): No such file or directory (it must be readable by the user s2cs runs as)"),
            (["--client-id", "abc", "--client-secret-file", folder.path],
             "Error: --client-secret-file \(folder.path) is not a regular file: give the file holding the client secret"),
            (["--client-id", "abc", "--client-secret", "xyz", "--client-secret-file", writeSecret("xyz")],
             "Error: --client-secret and --client-secret-file are exclusive: give the secret one way (the file keeps it out of 'ps')"),
            (["--client-secret-file", writeSecret("xyz")],
             "Error: --client-secret needs --client-id: the client id names the scope tokens must carry"),
        ]
        for (arguments, message) in cases {
            let output = await s2cs(arguments)
            #expect(output.status == 64, "\(arguments): \(output.stderr)")
            let lines = output.stderr.split(separator: "\n").map(String.init)
            #expect(lines.first == message, "\(arguments)")
            #expect(lines.dropFirst().first?.hasPrefix("Usage: s2cs") == true, "\(output.stderr)")
        }
        // Nothing was started or written: the config folder was never created.
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("s2cs").path))
    }
}
