import Foundation

/// One login in progress: the authorize URL to open, and the PKCE verifier that only this process knows.
public struct LoginFlow: Sendable {
    public let scopeID: String
    /// The scope string requested, `https://auth.globus.org/scopes/<scopeID>/scistream`.
    public let requestedScope: String
    public let redirectURI: String
    public let pkce: PKCE
    /// The URL the user opens in a browser.
    public let authorizeURL: String
}

/// What `logout` did: the scopes whose tokens were revoked and forgotten, and those that could not be revoked (kept).
public struct LogoutReport: Sendable {
    public var revoked: [String] = []
    public var failed: [(scope: String, error: AuthError)] = []
}

/// s2uc's side of authentication: logging in (native-app flow with PKCE), the access token to send
/// for a scope (refreshed first when it has expired), remembered s2cs addresses, logging out.
public struct UserTokens: Sendable {
    public let store: TokenStore
    public let auth: GlobusAuthClient
    /// The native app s2uc logs in as.
    public let clientID: String
    /// An access token this close to its expiry (seconds) is refreshed before use.
    public static let refreshMargin = 60

    public init(store: TokenStore, auth: GlobusAuthClient, clientID: String = GlobusAuth.nativeClientID) {
        self.store = store
        self.auth = auth
        self.clientID = clientID
    }

    // MARK: login

    /// Whether a usable login for `scope` is stored: an access token not yet expired, or a refresh token.
    public func isLoggedIn(scope: String) throws(AuthError) -> Bool {
        guard let token = try store.load().tokens[scope] else { return false }
        return token.refreshToken != nil || !token.expires(within: 0)
    }

    /// Step one: a fresh PKCE pair and the authorize URL (`prompt=login`, offline access for a refresh token).
    public func startLogin(scope: String) throws(AuthError) -> LoginFlow {
        let scopeID = try GlobusAuth.validateScopeID(scope)
        let pkce = try PKCE.make()
        let requested = GlobusAuth.scistreamScope(scopeID)
        let redirect = GlobusAuth.redirectURI(auth.baseURL)
        let query = GlobusAuthClient.formEncode([
            ("client_id", clientID), ("redirect_uri", redirect), ("scope", requested), ("state", "_default"),
            ("response_type", "code"), ("code_challenge", pkce.challenge), ("code_challenge_method", "S256"),
            ("access_type", "offline"), ("prompt", "login"),
        ])
        return LoginFlow(scopeID: scopeID, requestedScope: requested, redirectURI: redirect, pkce: pkce,
                         authorizeURL: auth.authorizeURL + "?" + query)
    }

    /// Step two: exchanges the code the user pasted and stores the tokens (and, if given, which s2cs
    /// address this scope is for).
    public func finishLogin(_ flow: LoginFlow, code: String, address: String? = nil) async throws -> StoredToken {
        let code = code.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !code.isEmpty else { throw AuthError.noAuthorizationCode }
        let grant = try await auth.exchangeCode(code, verifier: flow.pkce.verifier, redirectURI: flow.redirectURI,
                                                clientID: clientID, resourceServer: flow.scopeID)
        let token = StoredToken(accessToken: grant.accessToken, refreshToken: grant.refreshToken,
                                expiresAt: Int(Date().timeIntervalSince1970) + grant.expiresIn,
                                resourceServer: grant.resourceServer,
                                scope: grant.scope.isEmpty ? flow.requestedScope : grant.scope)
        try await store.update { file in
            file.tokens[flow.scopeID] = token
            if let address { file.addresses[address] = flow.scopeID }
        }
        return token
    }

    // MARK: addresses

    /// Remembers that the s2cs at `address` (`host:port`) is reached with `scope`.
    public func remember(address: String, scope: String) async throws {
        try await store.update { file in file.addresses[address] = scope }
    }

    /// The scope remembered for an s2cs address, if any.
    public func scope(forAddress address: String) throws(AuthError) -> String? {
        try store.load().addresses[address]
    }

    /// The remembered addresses whose host is `host` (any port), with their scopes, sorted by address.
    public func addresses(forHost host: String, hostOf: (String) -> String?) throws(AuthError) -> [(address: String, scope: String)] {
        try store.load().addresses
            .filter { hostOf($0.key) == host }
            .map { (address: $0.key, scope: $0.value) }
            .sorted { $0.address < $1.address }
    }

    // MARK: tokens

    /// The access token to send for `scope`, refreshed first if it has expired (or is about to);
    /// nil when nothing is stored for it.
    public func accessToken(scope: String) async throws -> String? {
        guard let token = try store.load().tokens[scope] else { return nil }
        if !token.expires(within: Self.refreshMargin) { return token.accessToken }
        return try await store.update { file -> String? in
            // Another s2uc may have refreshed it while we waited for the lock.
            guard let current = file.tokens[scope] else { return nil }
            if !current.expires(within: Self.refreshMargin) { return current.accessToken }
            guard let refreshToken = current.refreshToken else {
                if !current.expires(within: 0) { return current.accessToken }
                throw AuthError.refreshFailed(scope: scope, reason: "no refresh token is stored")
            }
            let grant: TokenGrant
            do {
                grant = try await auth.refresh(refreshToken, clientID: clientID, resourceServer: current.resourceServer)
            } catch {
                if !current.expires(within: 0) { return current.accessToken }  // still valid for a moment: use it
                throw AuthError.refreshFailed(scope: scope, reason: "\(error)")
            }
            var updated = current
            updated.accessToken = grant.accessToken
            updated.expiresAt = Int(Date().timeIntervalSince1970) + grant.expiresIn
            if let newRefresh = grant.refreshToken { updated.refreshToken = newRefresh }
            if !grant.scope.isEmpty { updated.scope = grant.scope }
            file.tokens[scope] = updated
            return updated.accessToken
        }
    }

    // MARK: logout

    /// Revokes every stored token (access and refresh) and forgets it. Tokens whose revocation
    /// failed are kept, so that logout can be run again; the others are removed, with their addresses.
    public func logout() async throws -> LogoutReport {
        // Nothing stored: nothing to revoke, no folder to create.
        if try store.load().tokens.isEmpty && !FileManager.default.fileExists(atPath: store.path) { return LogoutReport() }
        return try await store.update { file in
            var report = LogoutReport()
            for scope in file.tokens.keys.sorted() {
                guard let token = file.tokens[scope] else { continue }
                var failure: AuthError? = nil
                for value in [token.accessToken, token.refreshToken].compactMap({ $0 }) {
                    do { try await auth.revoke(value, clientID: clientID) } catch {
                        failure = failure ?? (error as? AuthError) ?? .unreachable(url: auth.revokeURL, reason: "\(error)")
                    }
                }
                if let failure {
                    report.failed.append((scope, failure))
                } else {
                    report.revoked.append(scope)
                    file.tokens[scope] = nil
                    file.addresses = file.addresses.filter { $0.value != scope }
                }
            }
            if file.tokens.isEmpty { file.addresses = [:] }
            return report
        }
    }
}
