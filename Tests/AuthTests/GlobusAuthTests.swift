import Foundation
import Testing
@testable import SciStreamAuth

@Suite struct GlobusAuthTests {
    @Test func serviceURLDefaultsToGlobusAndFollowsTheSDKVariable() throws {
        #expect(try GlobusAuth.serviceURL(environment: [:]).absoluteString == "https://auth.globus.org")
        #expect(try GlobusAuth.serviceURL(environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": ""]).absoluteString == "https://auth.globus.org")
        #expect(try GlobusAuth.serviceURL(environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": "https://auth.sandbox.example.org/"]).absoluteString == "https://auth.sandbox.example.org")
        #expect(try GlobusAuth.serviceURL(environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": "http://127.0.0.1:8080"]).absoluteString == "http://127.0.0.1:8080")
        #expect(try GlobusAuth.serviceURL(environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": "http://localhost:8080/"]).absoluteString == "http://localhost:8080")
        #expect(try GlobusAuth.serviceURL(environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": "http://[::1]:8080"]).absoluteString == "http://[::1]:8080")
    }

    @Test(arguments: ["http://auth.example.org", "ftp://127.0.0.1", "auth.globus.org", "https://user:pw@auth.example.org", "https://auth.example.org/?x=1"])
    func serviceURLRefusesWhatWouldLeakOrCannotWork(_ text: String) {
        #expect(throws: AuthError.self) { try GlobusAuth.serviceURL(environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": text]) }
        do {
            _ = try GlobusAuth.serviceURL(environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": text])
        } catch {
            #expect(error.description.hasPrefix("GLOBUS_SDK_SERVICE_URL_AUTH='\(text)' is not usable: "))
        }
    }

    @Test func plainHTTPToAnotherHostSaysWhy() {
        #expect(throws: AuthError.invalidServiceURL("http://auth.example.org", reason: "plain http is allowed only to a loopback address (a local test server); use https")) {
            try GlobusAuth.serviceURL(environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": "http://auth.example.org"])
        }
    }

    @Test func scopeIDs() throws {
        #expect(try GlobusAuth.validateScopeID("abc") == "abc")
        #expect(try GlobusAuth.validateScopeID("92c36fec-6d3c-41f6-a487-dfda1281c4e5") == "92c36fec-6d3c-41f6-a487-dfda1281c4e5")
        for bad in ["", "a b", "a/b", "..", "x\ny", "https://auth.globus.org/scopes/abc/scistream", String(repeating: "a", count: 129)] {
            #expect(throws: AuthError.invalidScopeID(bad)) { try GlobusAuth.validateScopeID(bad) }
        }
        #expect(GlobusAuth.scistreamScope("abc") == "https://auth.globus.org/scopes/abc/scistream")
    }

    @Test func authorizeURLCarriesTheNativeAppParameters() throws {
        let store = TokenStore(folder: "/nonexistent")
        let tokens = UserTokens(store: store, auth: GlobusAuthClient(baseURL: URL(string: "https://auth.globus.org")!))
        let flow = try tokens.startLogin(scope: "1234")
        #expect(flow.authorizeURL.hasPrefix("https://auth.globus.org/v2/oauth2/authorize?client_id=4787c84e-9c55-4881-b941-cb6720cea11c&redirect_uri=https%3A%2F%2Fauth.globus.org%2Fv2%2Fweb%2Fauth-code&scope=https%3A%2F%2Fauth.globus.org%2Fscopes%2F1234%2Fscistream&"))
        let items = try #require(URLComponents(string: flow.authorizeURL)?.queryItems)
        var query: [String: String] = [:]
        for item in items { query[item.name] = item.value }
        #expect(query["response_type"] == "code")
        #expect(query["code_challenge_method"] == "S256")
        #expect(query["code_challenge"] == flow.pkce.challenge)
        #expect(query["access_type"] == "offline")
        #expect(query["prompt"] == "login")
        #expect(query["state"] == "_default")
        #expect(query["code_verifier"] == nil, "the verifier never leaves the process before the exchange")
        #expect(!flow.authorizeURL.contains(flow.pkce.verifier))
    }

    @Test func formEncodingEscapesEverythingButUnreserved() {
        #expect(GlobusAuthClient.formEncode([("a b", "x+y/z=&"), ("k", "~._-")]) == "a%20b=x%2By%2Fz%3D%26&k=~._-")
    }
}
