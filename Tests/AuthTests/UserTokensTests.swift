import Foundation
import Testing
@testable import SciStreamAuth
import FakeGlobusAuth

@Suite struct UserTokensTests {
    let fake: FakeGlobusAuth
    let home = temporaryHome("user")
    let tokens: UserTokens

    init() throws {
        fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz")
        tokens = UserTokens(store: try TokenStore.standard(environment: ["HOME": home]),
                            auth: GlobusAuthClient(baseURL: URL(string: fake.baseURL)!, timeout: .seconds(5)))
    }

    func finish() {
        fake.stop()
        try? FileManager.default.removeItem(atPath: home)
    }

    func login(_ scope: String = "abc", address: String? = nil) async throws -> StoredToken {
        let flow = try tokens.startLogin(scope: scope)
        return try await tokens.finishLogin(flow, code: try fake.authorize(url: flow.authorizeURL) + "\n", address: address)
    }

    @Test func loginStoresTheTokensAndTheAddress() async throws {
        defer { finish() }
        #expect(try tokens.isLoggedIn(scope: "abc") == false)
        let token = try await login(address: "127.0.0.1:5000")
        #expect(token.scope == "https://auth.globus.org/scopes/abc/scistream" && token.resourceServer == "abc")
        #expect(token.refreshToken != nil)
        #expect(try tokens.isLoggedIn(scope: "abc"))
        #expect(try tokens.scope(forAddress: "127.0.0.1:5000") == "abc")
        #expect(try await tokens.accessToken(scope: "abc") == token.accessToken)
        #expect(try await tokens.accessToken(scope: "other") == nil)
        #expect(fake.grants == ["authorization_code"])
        #expect(mode(tokens.store.path) == 0o600 && mode(tokens.store.folder) == 0o700)
    }

    @Test func anEmptyCodeIsRefusedBeforeAnyNetwork() async throws {
        defer { finish() }
        let flow = try tokens.startLogin(scope: "abc")
        await #expect(throws: AuthError.noAuthorizationCode) { try await tokens.finishLogin(flow, code: "  \n") }
        #expect(fake.requests.isEmpty)
    }

    @Test func anExpiredAccessTokenIsRefreshedOnceAndSaved() async throws {
        defer { finish() }
        fake.accessTokenLifetime = 1
        let first = try await login()
        fake.accessTokenLifetime = 3600
        try await Task.sleep(for: .milliseconds(1100))
        let renewed = try #require(try await tokens.accessToken(scope: "abc"))
        #expect(renewed != first.accessToken)
        #expect(fake.grants == ["authorization_code", "refresh_token"])
        #expect(try tokens.store.load().tokens["abc"]?.accessToken == renewed)
        // Fresh now: no second refresh.
        #expect(try await tokens.accessToken(scope: "abc") == renewed)
        #expect(fake.grants.count == 2)
    }

    @Test func aRefreshThatFailsSaysToLogInAgain() async throws {
        defer { finish() }
        fake.accessTokenLifetime = 0
        let first = try await login()
        try await fake.revokeForTest(first.refreshToken!)
        await #expect(throws: AuthError.refreshFailed(scope: "abc", reason: "Globus Auth at \(fake.baseURL)/v2/oauth2/token answered HTTP 400 (invalid_grant): unknown or revoked refresh token")) {
            try await tokens.accessToken(scope: "abc")
        }
    }

    @Test func logoutRevokesEveryTokenAndRemovesTheFile() async throws {
        defer { finish() }
        let a = try await login("abc", address: "127.0.0.1:5000")
        let b = try await login("def")
        let report = try await tokens.logout()
        #expect(report.revoked == ["abc", "def"] && report.failed.isEmpty)
        #expect(Set(fake.revoked) == Set([a.accessToken, a.refreshToken!, b.accessToken, b.refreshToken!]))
        #expect(!FileManager.default.fileExists(atPath: tokens.store.path))
        #expect(try tokens.isLoggedIn(scope: "abc") == false)
    }

    @Test func logoutWithTheServerDownKeepsTheTokensToTryAgain() async throws {
        defer { finish() }
        _ = try await login("abc")
        fake.stop()
        let report = try await tokens.logout()
        #expect(report.revoked.isEmpty)
        #expect(report.failed.map(\.scope) == ["abc"])
        #expect(try tokens.isLoggedIn(scope: "abc"))
    }
}

extension FakeGlobusAuth {
    /// Revokes a token through the real endpoint, as another logout would.
    func revokeForTest(_ token: String) async throws {
        try await GlobusAuthClient(baseURL: URL(string: baseURL)!).revoke(token, clientID: GlobusAuth.nativeClientID)
    }
}
