import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire
import SciStreamAuth
import SciStreamCommandLine

/// s2uc's authentication commands (`login`, `check-auth`, `logout`) and the token each RPC carries.
///
/// Which token an RPC sends: the access token stored for `--scope` if given; else the scope
/// remembered for the `--s2cs` address (`s2uc login --scope <id> --s2cs <host:port>` remembers it;
/// the address is matched exactly, host case-insensitively); else `INVALID_TOKEN`. An access token
/// that has expired is refreshed first.
extension UserClient {
    static let authSubcommands: [Subcommand] = [
        Subcommand(names: ["login"],
                   usage: [.required("scope"), .optional("s2cs")],
                   abstract: "Log in with Globus for the scope of an s2cs (its client id) and keep the tokens in ~/.scistream.",
                   options: [
                       OptionSpec("scope", value: "scope_id", help: "The client id of the s2cs (its 'scistream' scope)."),
                       OptionSpec("s2cs", value: "host:port", help: "Remember that this s2cs uses the scope, so that requests to it need no --scope."),
                   ],
                   maxPositionals: 0, run: { try await runLogin($0) }),
        Subcommand(names: ["check-auth", "check_auth"],
                   usage: [.required("scope"), .text("|"), .required("ip")],
                   abstract: "Show the access token held for a scope, or for the scope remembered for an s2cs address.",
                   options: [
                       OptionSpec("scope", value: "scope_id", help: "The scope (s2cs client id) to show the token of."),
                       OptionSpec("ip", value: "host[:port]", help: "An s2cs address remembered at login; a bare host matches any port."),
                   ],
                   maxPositionals: 0, run: { try await runCheckAuth($0) }),
        Subcommand(names: ["logout"],
                   usage: [],
                   abstract: "Revoke every stored token with Globus Auth and delete them.",
                   options: [], maxPositionals: 0, run: { try await runLogout($0) }),
    ]

    static let linkPrompt = "Please authenticate with Globus here"
    static let codePrompt = "Enter the resulting Authorization Code here: "

    // MARK: set-up

    static func tokenStore(_ environment: [String: String]) throws -> TokenStore {
        try TokenStore.standard(environment: environment) { Console.err("warning: \($0)") }
    }

    static func userTokens(_ store: TokenStore, _ environment: [String: String]) throws -> UserTokens {
        let base = try GlobusAuth.serviceURL(environment: environment)
        return UserTokens(store: store, auth: GlobusAuthClient(baseURL: base, timeout: .seconds(30)))
    }

    static func scopeOption(_ parsed: ParsedArguments, _ option: OptionSpec = Flag.scope) throws -> String? {
        guard let text = parsed.value(option), !text.isEmpty else { return nil }
        do { return try GlobusAuth.validateScopeID(text) } catch { throw UsageError("bad --\(option.spelling): \(ErrorWording.auth(error))") }
    }

    /// The key an s2cs address is remembered under: `host:port`, host lowercased, IPv6 in brackets.
    static func addressKey(host: String, port: UInt16) -> String {
        Endpoint(host: host.lowercased(), port: port).description
    }

    // MARK: the token of an RPC

    /// The bearer token for an RPC to `target` (see the type's comment for the rules).
    static func accessToken(_ parsed: ParsedArguments, target: ControlTarget, scopeOption option: OptionSpec = Flag.scope) async throws -> String {
        let environment = parsed.environment
        let store = try tokenStore(environment)
        let scope: String
        if let given = try scopeOption(parsed, option) {
            scope = given
        } else if let remembered = try store.load().addresses[addressKey(host: target.host, port: target.port)] {
            scope = remembered
        } else {
            return GlobusAuth.noToken
        }
        guard let token = try await userTokens(store, environment).accessToken(scope: scope) else {
            Console.err("warning: no token for scope '\(scope)' in \(store.path): sending \(GlobusAuth.noToken); log in with 's2uc login --scope \(scope)'")
            return GlobusAuth.noToken
        }
        return token
    }

    /// The hint after an UNAUTHENTICATED reply: log in for the scope the s2cs named.
    static func loginHint(_ status: Status) -> String {
        if let range = status.message.range(of: "for scope ", options: .backwards),
           let scope = try? GlobusAuth.validateScopeID(String(status.message[range.upperBound...])) {
            return "; log in with 's2uc login --scope \(scope)'"
        }
        return "; log in with 's2uc login --scope <scope>'"
    }

    // MARK: login

    static func runLogin(_ parsed: ParsedArguments) async throws {
        guard let scope = try scopeOption(parsed) else {
            throw UsageError("missing --scope: give the client id of the s2cs, as in 's2uc login --scope <scope_id>'")
        }
        var address: String? = nil
        if let text = parsed.value(Flag.s2cs) {
            do {
                let endpoint = try Endpoint.parse(text)
                address = addressKey(host: endpoint.host, port: endpoint.port)
            } catch {
                throw UsageError("bad --s2cs '\(text)': \(error)")
            }
        }
        let environment = parsed.environment
        let store = try tokenStore(environment)
        let tokens = try userTokens(store, environment)
        output.set("scope", scope)
        output.set("s2cs", address.map(JSONValue.string) ?? .null)
        output.set("token_file", store.path)

        if try tokens.isLoggedIn(scope: scope) {
            output.set("already_logged_in", .bool(true))
            output.line("You are already logged in, to try different credentials please log out!")
            if let address, try tokens.scope(forAddress: address) != scope {
                try await tokens.remember(address: address, scope: scope)
                output.line("Requests to s2cs \(address) will use scope '\(scope)' when --scope is not given")
            }
            return
        }
        output.set("already_logged_in", .bool(false))

        let flow = try tokens.startLogin(scope: scope)
        let rule = String(repeating: "-", count: linkPrompt.count)
        // With --json these go to stderr: the person must still see them, a program reads stdout.
        output.prompt("\(linkPrompt):\n\(rule)\n\(flow.authorizeURL)\n\(rule)\n")
        output.prompt(codePrompt, newline: false)
        let line = readLine(strippingNewline: true)
        // Typed at a terminal, the code ends the prompt line; piped in, it does not: end it ourselves.
        if isatty(STDIN_FILENO) == 0 { output.prompt("") }
        guard let code = line else { throw AuthError.noAuthorizationCode }
        _ = try await tokens.finishLogin(flow, code: code, address: address)
        output.line("You have successfully logged in for scope '\(scope)' (tokens saved in \(store.path))")
        if let address {
            output.line("Requests to s2cs \(address) will use scope '\(scope)' when --scope is not given")
        }
    }

    // MARK: check-auth

    static func runCheckAuth(_ parsed: ParsedArguments) async throws {
        let given = try scopeOption(parsed)
        let ipText = parsed.value(parsed.option(named: "ip")).flatMap { $0.isEmpty ? nil : $0 }
        if given != nil && ipText != nil {
            throw UsageError("give either --scope or --ip, not both")
        }
        let environment = parsed.environment
        let store = try tokenStore(environment)
        let tokens = try userTokens(store, environment)
        let scope: String
        if let given {
            scope = given
        } else if let ipText {
            scope = try rememberedScope(for: ipText, tokens)
        } else {
            throw UsageError("give --scope <scope_id> (the client id of the s2cs) or --ip <host[:port]> (an s2cs address remembered at login)")
        }
        guard let token = try await tokens.accessToken(scope: scope) else {
            throw AuthError.notLoggedIn(scope: scope, path: store.path)
        }
        output.set("scope", scope)
        output.set("access_token", token)
        output.line("Access Token for scope '\(scope)': \(token)")
    }

    /// The scope remembered for `--ip`: an exact `host:port`, or the one scope of a bare host.
    static func rememberedScope(for text: String, _ tokens: UserTokens) throws -> String {
        if let endpoint = try? Endpoint.parse(text) {
            let key = addressKey(host: endpoint.host, port: endpoint.port)
            guard let scope = try tokens.scope(forAddress: key) else {
                throw ClientError("no scope is remembered for s2cs \(key) in \(tokens.store.path): log in with 's2uc login --scope <scope_id> --s2cs \(key)', or pass --scope")
            }
            return scope
        }
        let host: String
        do { host = try Endpoint.validateHost(text).lowercased() } catch { throw UsageError("bad --ip '\(text)': \(error)") }
        let matches = try tokens.addresses(forHost: host) { key in (try? Endpoint.parse(key))?.host.lowercased() }
        let scopes = Set(matches.map(\.scope))
        guard let first = matches.first else {
            throw ClientError("no scope is remembered for an s2cs on \(host) in \(tokens.store.path): log in with 's2uc login --scope <scope_id> --s2cs \(host):<port>', or pass --scope")
        }
        guard scopes.count == 1 else {
            let list = matches.map { "\($0.address) uses '\($0.scope)'" }.joined(separator: ", ")
            throw ClientError("several scopes are remembered for \(host) (\(list)): pass --ip <host:port> or --scope")
        }
        return first.scope
    }

    // MARK: logout

    static func runLogout(_ parsed: ParsedArguments) async throws {
        let environment = parsed.environment
        let store = try tokenStore(environment)
        let report = try await userTokens(store, environment).logout()
        output.set("revoked", .strings(report.revoked))
        output.set("not_revoked", .array(report.failed.map { .object([("scope", .string($0.scope)), ("error", .string(ErrorWording.auth($0.error)))]) }))
        output.set("token_file", store.path)
        guard report.failed.isEmpty else {
            let reasons = report.failed.map { "scope '\($0.scope)': \(ErrorWording.auth($0.error))" }.joined(separator: "; ")
            var text = "could not revoke every token (\(reasons)); the tokens not revoked are kept in \(store.path): run 's2uc logout' again when Globus Auth can be reached, or delete that file to forget them without revoking"
            if !report.revoked.isEmpty {
                text += " (revoked and removed: " + report.revoked.map { "'\($0)'" }.joined(separator: ", ") + ")"
            }
            throw ClientError(text)
        }
        output.line("Successfully logged out!")
    }
}
