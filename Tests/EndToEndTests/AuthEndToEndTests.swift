import Foundation
import Testing
import TestPorts
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import SciStreamAuth
import FakeGlobusAuth

/// Authentication end to end: the real s2uc and s2cs processes against a fake Globus Auth on
/// loopback (`GLOBUS_SDK_SERVICE_URL_AUTH`), each s2uc with its own HOME.
@Suite struct AuthEndToEndTests {
    static let dashes = String(repeating: "-", count: 36)
    static let progress = ["sending client request message", "waiting for hello message", "sending for hello message"]

    let fake: FakeGlobusAuth
    let home = Harness.temporaryFolder("home")

    init() throws { fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz") }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = home.path
        env["GLOBUS_SDK_SERVICE_URL_AUTH"] = fake.baseURL
        return env
    }
    var tokenFile: String { home.path + "/.scistream/tokens.json" }
    var store: TokenStore { TokenStore(folder: home.path + "/.scistream") }

    func s2uc(_ arguments: [String]) async -> Harness.Output {
        await Harness.run(Harness.s2uc, arguments, environment: environment)
    }

    /// An s2cs that checks tokens against the fake (client id "abc", secret "xyz").
    func authDaemon(secret: String = "xyz") async throws -> Daemon {
        try await Daemon( extra: ["--client-id", "abc", "--client-secret", secret],
                         environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": fake.baseURL])
    }

    /// Stores a token for `scope` as a login would have.
    func storeToken(_ access: String, refresh: String? = nil, scope: String = "abc", expiresIn: Int = 3600) throws {
        var file = (try? store.load()) ?? TokenFile()
        file.tokens[scope] = StoredToken(accessToken: access, refreshToken: refresh, expiresAt: Int(Date().timeIntervalSince1970) + expiresIn,
                                         resourceServer: scope, scope: GlobusAuth.scistreamScope(scope))
        try store.save(file)
    }

    func storedAccessToken(_ scope: String = "abc") -> String? { (try? store.load())?.tokens[scope]?.accessToken }

    /// Runs `s2uc login ...` as a person would: waits for the prompt, "opens" the printed URL at the
    /// fake (which checks it and issues a code), types the code. `code` may replace what is typed;
    /// nil types nothing (end of input).
    func login(_ arguments: [String], code: ((String) throws -> String?)? = nil) async throws -> (Harness.Output, url: String) {
        let folder = Harness.temporaryFolder("login")
        defer { try? FileManager.default.removeItem(at: folder) }
        let out = folder.appendingPathComponent("out"), err = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.s2uc)
        process.arguments = ["login"] + arguments
        process.environment = environment
        let input = Pipe()
        process.standardInput = input
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        var url = ""
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline && process.isRunning {
            let text = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
            if text.hasSuffix("Enter the resulting Authorization Code here: ") {
                let lines = text.components(separatedBy: "\n")
                url = lines.count > 2 ? lines[2] : ""
                let typed = try code.map { try $0(url) } ?? fake.authorize(url: url)
                if let typed { input.fileHandleForWriting.write(Data((typed + "\n").utf8)) }
                break
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        try input.fileHandleForWriting.close()
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let status: Int32 = process.isRunning ? -1 : process.terminationStatus
        return (Harness.Output(status: status, stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
                               stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? ""), url)
    }

    func cleanUp() {
        fake.stop()
        try? FileManager.default.removeItem(at: home)
    }

    // MARK: login, check-auth, logout

    @Test func loginPrintsTheSeedsLinesAndKeepsTheTokensPrivate() async throws {
        defer { cleanUp() }
        let (output, url) = try await login(["--scope", "abc"])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stderr.isEmpty, "\(output.stderr)")
        #expect(output.stdout.components(separatedBy: "\n") == [
            "Please authenticate with Globus here:", Self.dashes, url, Self.dashes, "",
            "Enter the resulting Authorization Code here: ",
            "You have successfully logged in for scope 'abc' (tokens saved in \(tokenFile))", ""])
        #expect(url.hasPrefix("\(fake.baseURL)/v2/oauth2/authorize?client_id=4787c84e-9c55-4881-b941-cb6720cea11c&redirect_uri="))
        #expect(fake.requests == ["POST /v2/oauth2/token"])
        #expect(fake.grants == ["authorization_code"])

        // Mode 0600 in a 0700 folder.
        #expect(fileMode(tokenFile) == 0o600)
        #expect(fileMode(home.path + "/.scistream") == 0o700)
        let token = try #require(storedAccessToken())
        #expect(fake.issued(token)?.scope == "https://auth.globus.org/scopes/abc/scistream")

        let check = await s2uc(["check-auth", "--scope", "abc"])
        #expect(check.status == 0 && check.stdout == "Access Token for scope 'abc': \(token)\n", "\(check)")

        // Logged in already: says so, changes nothing, asks nothing.
        let before = try Data(contentsOf: URL(fileURLWithPath: tokenFile))
        let again = await s2uc(["login", "--scope", "abc"])
        #expect(again.status == 0 && again.stdout == "You are already logged in, to try different credentials please log out!\n", "\(again)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: tokenFile)) == before)
        #expect(fake.requests == ["POST /v2/oauth2/token"])

        let other = await s2uc(["check-auth", "--scope", "other"])
        #expect(other.status == 1)
        #expect(other.stderr == "Error: no token for scope 'other' in \(tokenFile): log in with 's2uc login --scope other'\n")
    }

    @Test func loginRefusesBadInputAndAWrongCode() async throws {
        defer { cleanUp() }
        let missing = await s2uc(["login"])
        #expect(missing.status == 64)
        #expect(missing.stderr.hasPrefix("Error: missing --scope: give the client id of the s2cs, as in 's2uc login --scope <scope_id>'\nUsage: s2uc login --scope <scope_id> [--s2cs <host:port>]\n"))
        let bad = await s2uc(["login", "--scope", "a/b"])
        #expect(bad.status == 64 && bad.stderr.hasPrefix("Error: bad --scope: 'a/b' is not a scope id"), "\(bad.stderr)")

        let (wrong, _) = try await login(["--scope", "abc"], code: { _ in "not-a-code" })
        #expect(wrong.status == 1)
        #expect(wrong.stderr == "Error: Globus Auth at \(fake.baseURL)/v2/oauth2/token answered HTTP 400 (invalid_grant): unknown or used authorization code\n")
        let (none, _) = try await login(["--scope", "abc"], code: { _ in nil })
        #expect(none.status == 1)
        #expect(none.stderr.hasPrefix("Error: no authorization code was entered"), "\(none.stderr)")
        #expect(!FileManager.default.fileExists(atPath: tokenFile))
        #expect(fake.grants.isEmpty)
    }

    @Test func checkAuthFindsTheScopeRememberedForAnAddress() async throws {
        defer { cleanUp() }
        let (output, _) = try await login(["--scope", "abc", "--s2cs", "127.0.0.1:5999"])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.hasSuffix("Requests to s2cs 127.0.0.1:5999 will use scope 'abc' when --scope is not given\n"))
        let token = try #require(storedAccessToken())
        for ip in ["127.0.0.1", "127.0.0.1:5999"] {
            let check = await s2uc(["check-auth", "--ip", ip])
            #expect(check.status == 0 && check.stdout == "Access Token for scope 'abc': \(token)\n", "\(ip): \(check)")
        }
        let unknown = await s2uc(["check-auth", "--ip", "10.0.0.1"])
        #expect(unknown.status == 1 && unknown.stderr.hasPrefix("Error: no scope is remembered for an s2cs on 10.0.0.1 in \(tokenFile)"), "\(unknown.stderr)")
        let neither = await s2uc(["check-auth"])
        #expect(neither.status == 64)
    }

    @Test func logoutRevokesEveryTokenAndDeletesTheFile() async throws {
        defer { cleanUp() }
        #expect(try await login(["--scope", "abc"]).0.status == 0)
        #expect(try await login(["--scope", "def"]).0.status == 0)
        let file = try store.load()
        let all = file.tokens.values.flatMap { [$0.accessToken, $0.refreshToken].compactMap { $0 } }
        #expect(all.count == 4)

        let output = await s2uc(["logout"])
        #expect(output.status == 0 && output.stdout == "Successfully logged out!\n", "\(output)")
        #expect(Set(fake.revoked) == Set(all))
        #expect(!FileManager.default.fileExists(atPath: tokenFile))
        let check = await s2uc(["check-auth", "--scope", "abc"])
        #expect(check.status == 1 && check.stderr.contains("no token for scope 'abc'"))
        // Nothing stored: logging out again is fine and talks to no one.
        let requests = fake.requests.count
        #expect(await s2uc(["logout"]).stdout == "Successfully logged out!\n")
        #expect(fake.requests.count == requests)
    }

    @Test func logoutWithGlobusAuthDownKeepsTheTokensAndSaysWhy() async throws {
        defer { cleanUp() }
        #expect(try await login(["--scope", "abc"]).0.status == 0)
        fake.stop()
        let output = await s2uc(["logout"])
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("Error: could not revoke every token (scope 'abc': cannot reach Globus Auth at \(fake.baseURL)/v2/oauth2/token/revoke: "), "\(output.stderr)")
        #expect(output.stderr.contains("are kept in \(tokenFile): run 's2uc logout' again"))
        #expect(storedAccessToken() != nil)
    }

    // MARK: s2cs with --client-id and --client-secret

    @Test func aLoggedInUserSetsUpSessionsAndEachSetupCostsOneIntrospection() async throws {
        defer { cleanUp() }
        let producer = try await authDaemon()
        let consumer = try await authDaemon()
        defer { producer.stop(); consumer.stop() }
        #expect(producer.log.contains("authentication is on: every request's token is checked by Globus Auth introspection"))
        #expect(producer.log.contains("scope=https://auth.globus.org/scopes/abc/scistream"))

        // Logged in with the producer's address remembered: no --scope needed there.
        #expect(try await login(["--scope", "abc", "--s2cs", producer.address]).0.status == 0)
        let token = try #require(storedAccessToken())

        let inbound = await s2uc(["inbound_request"] + producer.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "5001", "--num_conn", "2"])
        #expect(inbound.status == 0, "\(inbound.stderr)")
        let lines = inbound.lines
        #expect(lines.count == 7)
        let fields = lines.count > 1 ? lines[1].split(separator: " ").map(String.init) : []
        #expect(fields.count == 4 && fields[1] == producer.address && fields[2] == token && fields[3] == "PROD", "\(lines)")
        // Two listeners in the producer's range (which ones depends on what else holds ports there).
        let listeners = (lines.last ?? "").dropFirst("Listeners: [".count).dropLast()
            .split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: " '")) }
        #expect(listeners.count == 2 && listeners.allSatisfy { $0.hasPrefix("127.0.0.1:") && producer.ports.contains(UInt16($0.dropFirst(10)) ?? 0) }, "\(lines)")
        #expect(fake.introspections == 1, "request, hello and update share one introspection")

        // The consumer is reached with --scope.
        let uid = fields.first ?? ""
        let outbound = await s2uc(["outbound_request"] + consumer.clientArguments + ["--scope", "abc", "--receiver_ports", "\(consumer.ports[5])", uid, listeners.joined(separator: ",")])
        #expect(outbound.status == 0, "\(outbound.stderr)")
        #expect(outbound.lines.count == 7 && outbound.lines.last == "Listeners: ['127.0.0.1:\(consumer.ports[5])']")
        #expect(fake.introspections == 2, "one more for the consumer's s2cs, none more after")

        let list = await s2uc(["list"] + producer.clientArguments)
        #expect(list.status == 0 && list.stdout.contains(String(uid.prefix(8))), "\(list)")
        for daemon in [producer, consumer] {
            let release = await s2uc(["release", uid, "--scope", "abc"] + daemon.clientArguments)
            #expect(release.status == 0, "\(release.stderr)")
        }
        #expect(fake.introspections == 2)
        // Only a prefix of the token reaches the s2cs logs.
        #expect(!producer.log.contains(token) && !consumer.log.contains(token))
    }

    @Test func requestsWithoutAValidTokenAreRefusedBeforeAnythingHappens() async throws {
        defer { cleanUp() }
        let daemon = try await authDaemon()
        defer { daemon.stop() }
        let missing = "Authentication token is missing for scope abc; log in with 's2uc login --scope abc'"
        let invalid = "Authentication token is invalid for scope abc; log in with 's2uc login --scope abc'"

        // No login at all: INVALID_TOKEN on the session line, UNAUTHENTICATED from s2cs.
        let none = await s2uc(["inbound_request"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(none.status == 1)
        #expect(none.stderr == "Error: request failed at s2cs \(daemon.address): UNAUTHENTICATED: \(missing)\n")
        #expect(none.lines.count > 1 && none.lines[1].hasSuffix(" \(daemon.address) INVALID_TOKEN PROD"), "\(none.lines)")
        let list = await s2uc(["list"] + daemon.clientArguments)
        #expect(list.status == 1 && list.stderr == "Error: list failed at s2cs \(daemon.address): UNAUTHENTICATED: \(missing)\n", "\(list.stderr)")

        // An inactive token.
        let (inactive, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        fake.deactivate(inactive)
        try storeToken(inactive)
        let refused = await s2uc(["inbound_request", "--scope", "abc"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "Error: request failed at s2cs \(daemon.address): UNAUTHENTICATED: \(invalid)\n", "\(refused.stderr)")

        // An active token for another scope.
        let (foreign, _) = fake.mint(scope: "https://auth.globus.org/scopes/other/scistream")
        try storeToken(foreign)
        let wrongScope = await s2uc(["release", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3", "--scope", "abc"] + daemon.clientArguments)
        #expect(wrongScope.status == 1)
        #expect(wrongScope.stderr == "Error: release failed at s2cs \(daemon.address): UNAUTHENTICATED: \(invalid)\n", "\(wrongScope.stderr)")
        #expect(daemon.log.contains("info s2cs: request refused kind=0x4") && daemon.log.contains("reason=\"lacks the scope https://auth.globus.org/scopes/abc/scistream\""), "\(daemon.log)")
        #expect(daemon.log.contains("reason=\"no token\" status=UNAUTHENTICATED"))

        // Nothing was set up by the refused requests.
        let (valid, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        try storeToken(valid)
        let sessions = await s2uc(["list", "--scope", "abc"] + daemon.clientArguments)
        #expect(sessions.status == 0 && sessions.lines.count == 1, "\(sessions)")
    }

    @Test func anExpiredAccessTokenIsRefreshedBeforeTheRequest() async throws {
        defer { cleanUp() }
        let daemon = try await authDaemon()
        defer { daemon.stop() }
        fake.accessTokenLifetime = 1
        #expect(try await login(["--scope", "abc"]).0.status == 0)
        let old = try #require(storedAccessToken())
        fake.accessTokenLifetime = 3600
        try await Task.sleep(for: .milliseconds(1200))

        let output = await s2uc(["inbound_request", "--scope", "abc"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(fake.grants == ["authorization_code", "refresh_token"])
        let renewed = try #require(storedAccessToken())
        #expect(renewed != old)
        #expect(output.lines.count > 1 && output.lines[1].split(separator: " ").dropFirst(2).first.map(String.init) == renewed)
        #expect(fileMode(tokenFile) == 0o600)
    }

    @Test func globusAuthDownMeansUnavailableWithinABoundedTime() async throws {
        defer { cleanUp() }
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        try storeToken(token)
        let daemon = try await authDaemon()
        defer { daemon.stop() }
        fake.stop()

        let started = ContinuousClock.now
        let output = await s2uc(["inbound_request", "--scope", "abc"] + daemon.clientArguments + ["--num_conn", "1"])
        #expect(ContinuousClock.now - started < .seconds(10))
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("Error: request failed at s2cs \(daemon.address): UNAVAILABLE: s2cs cannot check the token: cannot reach Globus Auth at \(fake.baseURL)/v2/oauth2/token/introspect: "), "\(output.stderr)")
    }

    @Test func globusAuthThatNeverAnswersIsCutOffAfterFiveSeconds() async throws {
        defer { cleanUp() }
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        try storeToken(token)
        let daemon = try await authDaemon()
        defer { daemon.stop() }
        fake.stalled = true

        let started = ContinuousClock.now
        let output = await s2uc(["list", "--scope", "abc"] + daemon.clientArguments)
        let elapsed = ContinuousClock.now - started
        #expect(elapsed < .seconds(10), "\(elapsed)")
        #expect(output.status == 1)
        #expect(output.stderr == "Error: list failed at s2cs \(daemon.address): UNAVAILABLE: s2cs cannot check the token: cannot reach Globus Auth at \(fake.baseURL)/v2/oauth2/token/introspect: no answer within 5.0 seconds\n", "\(output.stderr)")
    }

    @Test func aWrongClientSecretIsReportedAsTheServersProblem() async throws {
        defer { cleanUp() }
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        try storeToken(token)
        let daemon = try await authDaemon(secret: "not-the-secret")
        defer { daemon.stop() }
        let output = await s2uc(["list", "--scope", "abc"] + daemon.clientArguments)
        #expect(output.status == 1)
        #expect(output.stderr == "Error: list failed at s2cs \(daemon.address): UNAVAILABLE: s2cs cannot check tokens: Globus Auth at \(fake.baseURL)/v2/oauth2/token/introspect answered HTTP 401: the credentials were refused; check its --client-id and --client-secret (client abc)\n", "\(output.stderr)")
    }

    @Test func s2csConfigurationOfAuthentication() async throws {
        defer { cleanUp() }
        let off = try await Daemon(ports: try .reserve(2), extra: ["--client-id", "abc"])
        #expect(off.log.contains("authentication is off (no --client-secret): tokens are not checked"))
        off.stop()

        let noID = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--client-secret", "xyz"])
        #expect(noID.status == 64)
        #expect(noID.stderr.hasPrefix("Error: --client-secret needs --client-id"), "\(noID.stderr)")

        let badID = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock", "--client-id", "a b", "--client-secret", "xyz",
                                                     "--config_folder", home.appendingPathComponent("s2cs").path])
        #expect(badID.status == 1)
        #expect(badID.stderr == "Error: --client-id 'a b' is not a Globus client id (letters, digits, '-', '_' and '.', as in 1a2b3c4d-...)\n", "\(badID.stderr)")

        var env = ProcessInfo.processInfo.environment
        env["GLOBUS_SDK_SERVICE_URL_AUTH"] = "http://auth.example.org"
        let plain = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock", "--client-id", "abc", "--client-secret", "xyz",
                                                     "--config_folder", home.appendingPathComponent("s2cs").path], environment: env)
        #expect(plain.status == 1)
        #expect(plain.stderr == "Error: GLOBUS_SDK_SERVICE_URL_AUTH='http://auth.example.org' is not usable: plain http is allowed only to a loopback address (a local test server); use https\n", "\(plain.stderr)")
    }
}

func fileMode(_ path: String) -> Int {
    var info = stat()
    guard stat(path, &info) == 0 else { return -1 }
    return Int(info.st_mode & 0o777)
}
