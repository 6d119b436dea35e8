import Foundation
import Synchronization
import Testing
import SciStreamSystem
@testable import SciStreamAuth
import SciStreamCommandLine
import SciStreamServer
import FakeGlobusAuth

/// A wall clock the test moves by hand, so that cache lifetimes are tested without waiting.
final class ManualClock: Sendable {
    private let current = Mutex(Date())
    func now() -> Date { current.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

@Suite struct TokenCheckerTests {
    let fake: FakeGlobusAuth
    let logs = LogSink.memory()
    let clock = ManualClock()

    init() throws { fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz") }

    func checker(secret: String = "xyz", timeout: Duration = .seconds(5), maxEntries: Int = 10_000,
                 maxConcurrent: Int = 32, failureBackoff: Duration = .zero) -> TokenChecker {
        let clock = self.clock
        return TokenChecker(clientID: "abc", clientSecret: secret,
                            auth: GlobusAuthClient(baseURL: URL(string: fake.baseURL)!, timeout: timeout),
                            logger: Logger(label: "test", level: .debug, sink: logs), maxEntries: maxEntries,
                            maxConcurrentIntrospections: maxConcurrent, failureBackoff: failureBackoff, now: { clock.now() })
    }

    @Test func afterAnUnreachableServerChecksBackOffThenTryAgain() async {
        let checker = checker(failureBackoff: .seconds(1))
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        fake.stop()
        for _ in 0..<5 {
            guard case .unavailable = await checker.check(token) else { Issue.record("not unavailable"); return }
        }
        // One attempt in the first second, whatever the number of requests.
        #expect(await checker.introspections == 1)
        clock.advance(2)
        guard case .unavailable = await checker.check(token) else { Issue.record("not unavailable"); return }
        #expect(await checker.introspections == 2)
    }

    @Test func aFullCacheKeepsValidVerdictsAndDropsRefusals() async {
        defer { fake.stop() }
        let checker = checker(maxEntries: 3)
        let (good, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        #expect(await checker.check(good) == .valid(username: FakeGlobusAuth.username, subject: FakeGlobusAuth.subject))
        // A flood of made-up tokens fills the cache with refusals...
        for index in 0..<20 {
            guard case .invalid = await checker.check("made-up-\(index)") else { Issue.record("not invalid"); return }
        }
        // ...and the valid verdict is still cached: no new introspection for it.
        let before = fake.introspections
        #expect(await checker.check(good) == .valid(username: FakeGlobusAuth.username, subject: FakeGlobusAuth.subject))
        #expect(fake.introspections == before)
    }

    @Test func aTokenIsLoggedByItsFirstCharactersOnlyWhenTheyLookLikeOne() async {
        defer { fake.stop() }
        let checker = checker()
        _ = await checker.check("abc123-rest-of-it")
        _ = await checker.check("a b=c\nforged")
        let lines = logs.recorded.filter { $0.contains("token refused") }
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.first?.contains("token=abc123…") == true, "\(lines)")
        #expect(lines.last?.contains("token=\"(not a token)\"") == true, "\(lines)")
    }

    @Test func oneClientGetsAShareOfTheIntrospectionsInFlight() async {
        defer { fake.stop() }
        fake.stalled = true
        let checker = checker(timeout: .seconds(2), maxConcurrent: 8)
        let verdicts = await withTaskGroup(of: TokenVerdict.self) { group in
            for index in 0..<6 { group.addTask { await checker.check("made-up-\(index)", client: "192.0.2.7") } }
            var all: [TokenVerdict] = []
            for await verdict in group { all.append(verdict) }
            return all
        }
        // A quarter of the 8 went to the (stalled) server for that client; the rest were refused at once.
        #expect(verdicts.filter { $0 == .unavailable(message: "s2cs is checking too many tokens from your address at once: retry in a moment") }.count == 4, "\(verdicts)")
        #expect(await checker.introspections == 2)
    }

    @Test func introspectionsInFlightAreBounded() async {
        defer { fake.stop() }
        fake.stalled = true
        let checker = checker(timeout: .seconds(2), maxConcurrent: 2)
        let verdicts = await withTaskGroup(of: TokenVerdict.self) { group in
            for index in 0..<6 { group.addTask { await checker.check("token-\(index)") } }
            var all: [TokenVerdict] = []
            for await verdict in group { all.append(verdict) }
            return all
        }
        // Two went to the (stalled) server; the other four were refused at once without a connection.
        #expect(await checker.introspections == 2)
        let refusedAtOnce = verdicts.filter { $0 == .unavailable(message: "s2cs is checking too many tokens at once: retry in a moment") }
        #expect(refusedAtOnce.count == 4, "\(verdicts)")
    }

    @Test func noTokenOrThePlaceholderIsMissingWithoutAnyNetwork() async {
        defer { fake.stop() }
        let checker = checker()
        #expect(await checker.check("") == .missing(message: "Authentication token is missing for scope abc"))
        #expect(await checker.check("INVALID_TOKEN") == .missing(message: "Authentication token is missing for scope abc"))
        #expect(fake.requests.isEmpty)
    }

    @Test func aValidTokenIsIntrospectedOnceThenCached() async {
        defer { fake.stop() }
        let checker = checker()
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        for _ in 0..<5 {
            #expect(await checker.check(token) == .valid(username: FakeGlobusAuth.username, subject: FakeGlobusAuth.subject))
        }
        #expect(fake.introspections == 1)
        #expect(await checker.introspections == 1)
        // The token never appears whole in the logs.
        #expect(!logs.recorded.joined().contains(token))
    }

    @Test func concurrentChecksOfOneTokenShareOneIntrospection() async {
        defer { fake.stop() }
        let checker = checker()
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        let verdicts = await withTaskGroup(of: TokenVerdict.self) { group in
            for _ in 0..<10 { group.addTask { await checker.check(token) } }
            var all: [TokenVerdict] = []
            for await verdict in group { all.append(verdict) }
            return all
        }
        #expect(verdicts.allSatisfy { $0 == .valid(username: FakeGlobusAuth.username, subject: FakeGlobusAuth.subject) })
        #expect(fake.introspections == 1)
    }

    @Test func anInactiveTokenIsInvalidAndTheRefusalIsCachedBriefly() async throws {
        defer { fake.stop() }
        let checker = checker()
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        fake.deactivate(token)
        #expect(await checker.check(token) == .invalid(message: "Authentication token is invalid for scope abc", reason: "inactive (expired, revoked or unknown)"))
        #expect(await checker.check(token) == .invalid(message: "Authentication token is invalid for scope abc", reason: "inactive (expired, revoked or unknown)"))
        #expect(fake.introspections == 1)
        clock.advance(9)
        _ = await checker.check(token)
        #expect(fake.introspections == 1, "still within the 10 s of a refusal")
        clock.advance(2)
        _ = await checker.check(token)
        #expect(fake.introspections == 2)
    }

    @Test func aTokenForAnotherScopeIsInvalid() async {
        defer { fake.stop() }
        let checker = checker()
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/other/scistream")
        #expect(await checker.check(token) == .invalid(message: "Authentication token is invalid for scope abc",
                                                       reason: "lacks the scope https://auth.globus.org/scopes/abc/scistream"))
        let (unknown, _) = ("AgNeverIssued", "")
        #expect(await checker.check(unknown) == .invalid(message: "Authentication token is invalid for scope abc", reason: "inactive (expired, revoked or unknown)"))
    }

    @Test func aValidVerdictLastsUntilTheTokenExpires() async throws {
        defer { fake.stop() }
        let checker = checker()
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream", lifetime: 3600)
        #expect(await checker.check(token) == .valid(username: FakeGlobusAuth.username, subject: FakeGlobusAuth.subject))
        clock.advance(3500)
        #expect(await checker.check(token) == .valid(username: FakeGlobusAuth.username, subject: FakeGlobusAuth.subject))
        #expect(fake.introspections == 1)
        // Past its exp (by the checker's clock), the verdict is gone: asked again, and refused as expired.
        clock.advance(200)
        #expect(await checker.check(token) == .invalid(message: "Authentication token is invalid for scope abc", reason: "expired"))
        #expect(fake.introspections == 2)
    }

    @Test func wrongClientCredentialsAreUnavailableAndNameTheFlags() async {
        defer { fake.stop() }
        let checker = checker(secret: "wrong")
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        let verdict = await checker.check(token)
        guard case .credentialsRefused(let error) = verdict else { Issue.record("not credentialsRefused"); return }
        #expect(!"\(error)".contains("--client"))
        let message = ErrorWording.tokenVerdict(verdict, clientID: "abc")
        #expect(message == "s2cs cannot check tokens: Globus Auth at \(fake.baseURL)/v2/oauth2/token/introspect answered HTTP 401: the credentials were refused; check its --client-id and --client-secret (client abc)")
    }

    @Test func anUnreachableServerIsUnavailableAndNotCached() async {
        let checker = checker()
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        fake.stop()
        for _ in 0..<2 {
            guard case .unavailable(let message) = await checker.check(token) else { Issue.record("not unavailable"); return }
            #expect(message.hasPrefix("s2cs cannot check the token: cannot reach Globus Auth at \(fake.baseURL)/v2/oauth2/token/introspect: "))
        }
        #expect(await checker.introspections == 2)
    }

    @Test func aStalledServerIsUnavailableWithinTheTimeout() async {
        defer { fake.stop() }
        fake.stalled = true
        let checker = checker(timeout: .seconds(1))
        let (token, _) = fake.mint(scope: "https://auth.globus.org/scopes/abc/scistream")
        let started = ContinuousClock.now
        #expect(await checker.check(token) == .unavailable(message: "s2cs cannot check the token: cannot reach Globus Auth at \(fake.baseURL)/v2/oauth2/token/introspect: no answer within 1.0 seconds"))
        #expect(ContinuousClock.now - started < .seconds(30))  // bounded; generous, the machine is shared
    }
}
