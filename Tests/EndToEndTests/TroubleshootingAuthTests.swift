import Foundation
import Testing
import SciStreamAuth
import FakeGlobusAuth

/// The authentication section of docs/troubleshooting.md quotes what s2uc prints against an s2cs
/// that checks tokens. Those messages need Globus Auth: here a fake one on loopback, which an s2cs
/// inside the testbed's namespaces could not reach; so the mistakes are made on loopback, and the
/// s2cs address in the messages is written as the tutorial's consumer-side one, 192.168.30.10:5007.
@Suite struct TroubleshootingAuthTests {
    @Test func theGuideQuotesTheAuthenticationMessages() async throws {
        let fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz")
        let home = Harness.temporaryFolder("auth-home")
        defer { try? FileManager.default.removeItem(at: home) }
        let daemon = try await Daemon(extra: ["--client-id", "abc", "--client-secret", "xyz"],
                                      environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": fake.baseURL])
        defer { daemon.stop() }
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = home.path
        environment["GLOBUS_SDK_SERVICE_URL_AUTH"] = fake.baseURL
        func s2uc(_ arguments: [String]) async -> Harness.Output {
            await Harness.run(Harness.s2uc, arguments, environment: environment)
        }
        func asInTheGuide(_ output: Harness.Output) -> String {
            (output.stderr.split(separator: "\n").first.map(String.init) ?? "")
                .replacingOccurrences(of: daemon.address, with: "192.168.30.10:5007")
        }
        var produced: Set<String> = []

        // Not logged in: the request carries INVALID_TOKEN.
        let missing = await s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(missing.status == 1)
        #expect(missing.lines.dropFirst().first?.hasSuffix(" INVALID_TOKEN PROD") == true, "\(missing.stdout)")
        produced.insert(asInTheGuide(missing))

        // A token that Globus Auth no longer accepts.
        let (inactive, _) = fake.mint(scope: GlobusAuth.scistreamScope("abc"))
        fake.deactivate(inactive)
        let store = TokenStore(folder: home.path + "/.scistream")
        var file = TokenFile()
        file.tokens["abc"] = StoredToken(accessToken: inactive, refreshToken: nil, expiresAt: Int(Date().timeIntervalSince1970) + 3600,
                                         resourceServer: "abc", scope: GlobusAuth.scistreamScope("abc"))
        try store.save(file)
        let invalid = await s2uc(["inbound_request", "--scope", "abc"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(invalid.status == 1)
        produced.insert(asInTheGuide(invalid))

        // The guide's advice: check-auth shows the token held for the scope.
        let check = await s2uc(["check-auth", "--scope", "abc"])
        #expect(check.status == 0 && check.stdout == "Access Token for scope 'abc': \(inactive)\n", "\(check.stdout) \(check.stderr)")

        let quoted = try TestbedSuites.TestbedTroubleshootingTests.quotedErrors(authentication: true)
        #expect(quoted == produced, "docs/troubleshooting.md's authentication section quotes \(quoted.sorted()), s2uc prints \(produced.sorted())")
    }
}
