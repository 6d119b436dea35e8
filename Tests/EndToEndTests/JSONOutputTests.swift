import Foundation
import Testing
import SciStreamWire
import SciStreamClient
import SciStreamCommandLine
import SciStreamSystem
import SciStreamAuth
import FakeGlobusAuth

/// `s2uc ... --json` (docs/json.md): the real s2uc against real s2cs processes; stdout parsed with
/// JSONSerialization and checked field by field; exit statuses as without `--json`.
@Suite struct JSONOutputTests {
    /// The one JSON object s2uc printed: stdout must be exactly one line holding one object.
    static func object(_ output: Harness.Output, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        #expect(output.stdout.hasSuffix("\n") && output.stdout.filter { $0 == "\n" }.count == 1,
                "stdout must be one line: \(output.stdout)", sourceLocation: sourceLocation)
        let parsed = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8))
        return try #require(parsed as? [String: Any], "not an object: \(output.stdout)", sourceLocation: sourceLocation)
    }

    /// Checks `ok`, `status` and `error` of a failed command and returns the error object.
    static func expectFailure(_ json: [String: Any], code: String, step: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any] {
        #expect(json["ok"] as? Bool == false, sourceLocation: sourceLocation)
        #expect(json["status"] as? String == code, "\(json)", sourceLocation: sourceLocation)
        let error = json["error"] as? [String: Any] ?? [:]
        #expect(error["code"] as? String == code, sourceLocation: sourceLocation)
        #expect(error["step"] as? String == step, "\(error)", sourceLocation: sourceLocation)
        #expect(!((error["message"] as? String) ?? "").isEmpty, sourceLocation: sourceLocation)
        return error
    }

    @Test func aWholeSessionInJSON() async throws {
        let producer = try await Daemon()
        let consumer = try await Daemon(tls: false)
        defer { producer.stop(); consumer.stop() }

        let inbound = await Harness.s2uc(["inbound_request", "--json"] + producer.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "5001,5002", "--num_conn", "2"])
        #expect(inbound.status == 0, "\(inbound.stderr)")
        #expect(inbound.stderr.isEmpty, "\(inbound.stderr)")
        let prod = try Self.object(inbound)
        let uid = try #require(prod["uid"] as? String)
        #expect(try SessionID.validate(uid) == uid)
        #expect(prod["command"] as? String == "inbound_request")
        #expect(prod["role"] as? String == "PROD")
        #expect(prod["s2cs"] as? String == producer.address)
        let listeners = try #require(prod["listeners"] as? [String])
        #expect(listeners.count == 2 && listeners.allSatisfy { $0.hasPrefix("127.0.0.1:") && producer.ports.contains(UInt16($0.dropFirst(10)) ?? 0) }, "\(listeners)")
        #expect(prod["targets"] as? [String] == ["127.0.0.1:5001", "127.0.0.1:5002"])
        #expect(prod["ok"] as? Bool == true && prod["status"] as? String == "OK" && prod["error"] == nil)
        #expect(prod["access_token"] == nil, "the token stays out of JSON output")

        // --json first works too.
        let outbound = await Harness.s2uc(["--json", "outbound_request"] + consumer.clientArguments + ["--receiver_ports", "\(consumer.ports[5])", uid, listeners.joined(separator: ",")])
        #expect(outbound.status == 0, "\(outbound.stderr)")
        let cons = try Self.object(outbound)
        #expect(cons["command"] as? String == "outbound_request")
        #expect(cons["uid"] as? String == uid && cons["role"] as? String == "CONS" && cons["s2cs"] as? String == consumer.address)
        #expect(cons["listeners"] as? [String] == ["127.0.0.1:\(consumer.ports[5])"])
        #expect(cons["targets"] as? [String] == listeners)

        let list = await Harness.s2uc(["list", "--json=True"] + producer.clientArguments)
        #expect(list.status == 0, "\(list.stderr)")
        let listed = try Self.object(list)
        #expect(listed["command"] as? String == "list" && listed["s2cs"] as? String == producer.address)
        let sessions = try #require(listed["sessions"] as? [[String: Any]])
        #expect(sessions.count == 1)
        let session = try #require(sessions.first)
        #expect(session["uid"] as? String == String(uid.prefix(8)), "only the prefix: the uid is the session secret")
        #expect(session["role"] as? String == "PROD" && session["state"] as? String == "active" && session["note"] as? String == "")
        #expect(session["listeners"] as? [String] == listeners)
        #expect(!list.stdout.contains(uid))

        for daemon in [producer, consumer] {
            let release = await Harness.s2uc(["release", uid, "--json"] + daemon.clientArguments)
            #expect(release.status == 0, "\(release.stderr)")
            let released = try Self.object(release)
            #expect(released["command"] as? String == "release" && released["uid"] as? String == uid && released["s2cs"] as? String == daemon.address)
            #expect(released["ok"] as? Bool == true)
        }
        let empty = try Self.object(await Harness.s2uc(["list", "--json"] + producer.clientArguments))
        #expect((empty["sessions"] as? [Any])?.isEmpty == true)
    }

    @Test func failuresCarryTheCodeTheStepAndTheSameExitStatus() async throws {
        let daemon = try await Daemon()
        defer { daemon.stop() }
        let unknown = "0e0b9c6a-1111-4222-8333-444455556666"

        // The s2cs answered NOT_FOUND: exit 1, the human error on stderr, the JSON on stdout.
        let release = await Harness.s2uc(["release", unknown, "--json"] + daemon.clientArguments)
        #expect(release.status == 1)
        #expect(release.stderr.hasPrefix("Error: release failed at s2cs \(daemon.address): NOT_FOUND"), "\(release.stderr)")
        let released = try Self.object(release)
        let error = Self.expectFailure(released, code: "NOT_FOUND", step: "release")
        #expect("Error: \(error["message"] as? String ?? "")\n" == release.stderr)
        #expect(released["uid"] as? String == unknown && released["s2cs"] as? String == daemon.address)

        // An outbound half asking for a port of the range that another program holds: the request fails.
        let squatter = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: daemon.ports.lower))
        defer { squatter.close() }
        let outbound = await Harness.s2uc(["outbound_request", "--json", "--receiver_ports", "\(daemon.ports.lower)"] + daemon.clientArguments + [unknown, "127.0.0.1:\(daemon.ports.upper)"])
        #expect(outbound.status == 1)
        let cons = try Self.object(outbound)
        _ = Self.expectFailure(cons, code: "RESOURCE_EXHAUSTED", step: "request")
        #expect(cons["uid"] as? String == unknown && cons["role"] as? String == "CONS")

        // ALREADY_EXISTS from the request itself.
        #expect(await Harness.s2uc(["inbound_request", "--mock", "True", "--num_conn", "1"] + daemon.clientArguments).status == 0)
        let again = await Harness.s2uc(["inbound_request", "--mock", "True", "--num_conn", "1", "--json"] + daemon.clientArguments)
        #expect(again.status == 1)
        _ = Self.expectFailure(try Self.object(again), code: "ALREADY_EXISTS", step: "request")

        // Nothing answers: a failure in s2uc itself.
        let closed = await Harness.s2uc(["list", "--json", "--s2cs", "127.0.0.1:1", "--ssl", "False"])
        #expect(closed.status == 1)
        let closedJSON = try Self.object(closed)
        _ = Self.expectFailure(closedJSON, code: "CLIENT_ERROR")
        #expect(closedJSON["s2cs"] as? String == "127.0.0.1:1")
        #expect(closed.stderr.hasPrefix("Error: cannot connect to s2cs at 127.0.0.1:1"), "\(closed.stderr)")
    }

    @Test func usageErrorsPrintTheUsageAndAJSONObject() async throws {
        let cases: [([String], String?, String)] = [
            (["list", "--num_conn", "3", "--json"], "list", "unknown option '--num_conn'"),
            (["inbound_request", "--json", "--receiver_ports", "50a1"], "inbound_request", "bad --receiver_ports: "),
            (["release", "--json"], "release", "missing the uid"),
            (["--json", "frobnicate"], nil, "unknown subcommand 'frobnicate'"),
            (["check-auth", "--json"], "check-auth", "give --scope"),
        ]
        for (arguments, command, message) in cases {
            let output = await Harness.s2uc(arguments)
            #expect(output.status == 64, "\(arguments): \(output)")
            #expect(output.stderr.hasPrefix("Error: \(message)") && output.stderr.contains("\nUsage: "), "\(arguments): \(output.stderr)")
            let json = try Self.object(output)
            #expect(json["command"] as? String == command, "\(arguments): \(json)")
            if command == nil { #expect(json["command"] is NSNull) }
            let error = Self.expectFailure(json, code: "USAGE_ERROR")
            #expect((error["message"] as? String)?.hasPrefix(message) == true, "\(error)")
        }
        // Help stays human and lists --json; version has a JSON form.
        let help = await Harness.s2uc(["list", "--help", "--json"])
        #expect(help.status == 0 && help.stdout.hasPrefix("OVERVIEW: ") && help.stdout.contains("  --json "))
        for arguments in [["--version", "--json"], ["--json", "--version"], ["list", "--version", "--json"]] {
            let version = await Harness.s2uc(arguments)
            #expect(version.status == 0)
            let json = try Self.object(version)
            #expect(json["command"] as? String == "version" && json["version"] as? String == SciStreamVersion.string, "\(arguments): \(json)")
        }
        // Without --json nothing changed.
        #expect(await Harness.s2uc(["--version"]).stdout == "s2uc, version \(SciStreamVersion.string)\n")
    }

    @Test func authenticationCommandsInJSON() async throws {
        let fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz")
        let home = Harness.temporaryFolder("home")
        defer { fake.stop(); try? FileManager.default.removeItem(at: home) }
        var environment = ProcessInfo.processInfo.environment
        environment["HOME"] = home.path
        environment["GLOBUS_SDK_SERVICE_URL_AUTH"] = fake.baseURL
        let store = TokenStore(folder: home.path + "/.scistream")
        let tokenFile = home.path + "/.scistream/tokens.json"
        func s2uc(_ arguments: [String]) async -> Harness.Output { await Harness.run(Harness.s2uc, arguments, environment: environment) }

        let missing = await s2uc(["check-auth", "--scope", "abc", "--json"])
        #expect(missing.status == 1)
        _ = Self.expectFailure(try Self.object(missing), code: "CLIENT_ERROR")

        var file = TokenFile()
        file.tokens["abc"] = StoredToken(accessToken: "AT-abc", refreshToken: nil, expiresAt: Int(Date().timeIntervalSince1970) + 3600,
                                         resourceServer: "abc", scope: GlobusAuth.scistreamScope("abc"))
        try store.save(file)

        let check = try Self.object(await s2uc(["check-auth", "--scope", "abc", "--json"]))
        #expect(check["command"] as? String == "check-auth" && check["scope"] as? String == "abc" && check["access_token"] as? String == "AT-abc", "\(check)")

        let login = await s2uc(["login", "--scope", "abc", "--s2cs", "127.0.0.1:5999", "--json"])
        #expect(login.status == 0, "\(login.stderr)")
        let loggedIn = try Self.object(login)
        #expect(loggedIn["already_logged_in"] as? Bool == true && loggedIn["scope"] as? String == "abc", "\(loggedIn)")
        #expect(loggedIn["s2cs"] as? String == "127.0.0.1:5999" && loggedIn["token_file"] as? String == tokenFile)

        let logout = await s2uc(["logout", "--json"])
        #expect(logout.status == 0, "\(logout.stderr)")
        let loggedOut = try Self.object(logout)
        #expect(loggedOut["revoked"] as? [String] == ["abc"] && (loggedOut["not_revoked"] as? [Any])?.isEmpty == true, "\(loggedOut)")
        #expect(fake.revoked == ["AT-abc"])
    }

    /// Control characters from a server never reach the terminal raw: JSON escapes them.
    @Test func stringsAreEscaped() throws {
        let text = "a\"b\\c\nd\u{1b}[31m\u{7f}\u{85}\u{2028}é"
        let encoded = JSONValue.object([("k", .string(text)), ("n", .int(-3)), ("b", .bool(false)), ("z", .null), ("a", .strings(["x"]))]).encoded
        #expect(encoded == #"{"k":"a\"b\\c\nd\u001b[31m\u007f\u0085\u2028é","n":-3,"b":false,"z":null,"a":["x"]}"#)
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(encoded.utf8)) as? [String: Any])
        #expect(decoded["k"] as? String == text)
    }
}
