import Foundation
import Testing
@testable import SciStreamAuth
import FakeGlobusAuth

@Suite struct GlobusAuthClientTests {
    @Test func codeExchangeWithPKCEThenRefreshRevokeAndIntrospect() async throws {
        let fake = try FakeGlobusAuth()
        defer { fake.stop() }
        let client = GlobusAuthClient(baseURL: URL(string: fake.baseURL)!, timeout: .seconds(5))
        let tokens = UserTokens(store: TokenStore(folder: "/nonexistent/.scistream"), auth: client)
        let flow = try tokens.startLogin(scope: fake.clientID)
        let code = try fake.authorize(url: flow.authorizeURL)
        let grant = try await client.exchangeCode(code, verifier: flow.pkce.verifier, redirectURI: flow.redirectURI,
                                                  clientID: GlobusAuth.nativeClientID, resourceServer: fake.clientID)
        #expect(grant.resourceServer == fake.clientID)
        #expect(grant.scope == GlobusAuth.scistreamScope(fake.clientID))
        #expect(grant.expiresIn == 3600)
        let refresh = try #require(grant.refreshToken)

        let seen = try await client.introspect(grant.accessToken, clientID: fake.clientID, clientSecret: fake.clientSecret)
        #expect(seen.active && seen.scopes == [GlobusAuth.scistreamScope(fake.clientID)] && seen.username == FakeGlobusAuth.username)

        let renewed = try await client.refresh(refresh, clientID: GlobusAuth.nativeClientID, resourceServer: fake.clientID)
        #expect(renewed.accessToken != grant.accessToken)

        try await client.revoke(renewed.accessToken, clientID: GlobusAuth.nativeClientID)
        #expect(fake.revoked == [renewed.accessToken])
        #expect(try await client.introspect(renewed.accessToken, clientID: fake.clientID, clientSecret: fake.clientSecret).active == false)
        #expect(fake.requests == ["POST /v2/oauth2/token", "POST /v2/oauth2/token/introspect", "POST /v2/oauth2/token",
                                  "POST /v2/oauth2/token/revoke", "POST /v2/oauth2/token/introspect"])
    }

    @Test func aWrongVerifierIsRefusedAndTheErrorNamesTheServer() async throws {
        let fake = try FakeGlobusAuth()
        defer { fake.stop() }
        let client = GlobusAuthClient(baseURL: URL(string: fake.baseURL)!, timeout: .seconds(5))
        let tokens = UserTokens(store: TokenStore(folder: "/nonexistent/.scistream"), auth: client)
        let flow = try tokens.startLogin(scope: "abc")
        let code = try fake.authorize(url: flow.authorizeURL)
        let other = try PKCE.make()
        await #expect(throws: AuthError.httpStatus(url: "\(fake.baseURL)/v2/oauth2/token", status: 400, oauthError: "invalid_grant",
                                                   detail: "code_verifier does not match the code_challenge")) {
            try await client.exchangeCode(code, verifier: other.verifier, redirectURI: flow.redirectURI,
                                          clientID: GlobusAuth.nativeClientID, resourceServer: "abc")
        }
        // Codes are single-use: the right verifier is too late now.
        await #expect(throws: AuthError.self) {
            try await client.exchangeCode(code, verifier: flow.pkce.verifier, redirectURI: flow.redirectURI,
                                          clientID: GlobusAuth.nativeClientID, resourceServer: "abc")
        }
        #expect(fake.grants.isEmpty)
    }

    /// The fake answers 401 with `WWW-Authenticate: Basic`, as RFC 6749 asks: URLSession must not sit on
    /// the challenge (it would until the timeout), and the error must say the credentials were refused.
    @Test func wrongClientCredentialsGiveHTTP401AtOnce() async throws {
        let fake = try FakeGlobusAuth()
        defer { fake.stop() }
        let client = GlobusAuthClient(baseURL: URL(string: fake.baseURL)!, timeout: .seconds(30))
        let started = ContinuousClock.now
        defer { #expect(ContinuousClock.now - started < .seconds(10)) }
        await #expect(throws: AuthError.httpStatus(url: "\(fake.baseURL)/v2/oauth2/token/introspect", status: 401, oauthError: nil, detail: "the credentials were refused")) {
            try await client.introspect("AgWhatever", clientID: fake.clientID, clientSecret: "wrong")
        }
    }

    /// Tokens and the client secret go to the configured server only: a redirect is reported, not followed.
    @Test func redirectsAreNotFollowed() async throws {
        let fake = try FakeGlobusAuth(), elsewhere = try FakeGlobusAuth()
        defer { fake.stop(); elsewhere.stop() }
        fake.redirect = elsewhere.baseURL
        let client = GlobusAuthClient(baseURL: URL(string: fake.baseURL)!, timeout: .seconds(5))
        await #expect(throws: AuthError.httpStatus(url: "\(fake.baseURL)/v2/oauth2/token/introspect", status: 307, oauthError: nil, detail: nil)) {
            try await client.introspect("AgWhatever", clientID: fake.clientID, clientSecret: fake.clientSecret)
        }
        #expect(fake.requests == ["POST /v2/oauth2/token/introspect"])
        #expect(elsewhere.requests.isEmpty)
    }

    @Test func aStoppedServerIsUnreachableAtOnce() async throws {
        let fake = try FakeGlobusAuth()
        fake.stop()
        let client = GlobusAuthClient(baseURL: URL(string: fake.baseURL)!, timeout: .seconds(5))
        let started = ContinuousClock.now
        do {
            _ = try await client.introspect("AgWhatever", clientID: "x", clientSecret: "y")
            Issue.record("introspection succeeded against a stopped server")
        } catch {
            guard case .unreachable(let url, _) = error else { Issue.record("\(error)"); return }
            #expect(url == "\(fake.baseURL)/v2/oauth2/token/introspect")
            #expect(error.description.hasPrefix("cannot reach Globus Auth at \(fake.baseURL)/v2/oauth2/token/introspect: "))
        }
        #expect(ContinuousClock.now - started < .seconds(8))
    }

    @Test func aServerThatNeverAnswersIsCutOffAtTheTimeout() async throws {
        let fake = try FakeGlobusAuth()
        defer { fake.stop() }
        fake.stalled = true
        let client = GlobusAuthClient(baseURL: URL(string: fake.baseURL)!, timeout: .milliseconds(800))
        let started = ContinuousClock.now
        await #expect(throws: AuthError.unreachable(url: "\(fake.baseURL)/v2/oauth2/token/introspect", reason: "no answer within 0.8 seconds")) {
            try await client.introspect("AgWhatever", clientID: "x", clientSecret: "y")
        }
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .milliseconds(700) && elapsed < .seconds(8), "\(elapsed)")
    }
}
