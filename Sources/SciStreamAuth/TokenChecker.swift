import Foundation
import SciStreamSystem

/// The verdict on one RPC's token.
public enum TokenVerdict: Sendable, Equatable {
    /// Active, with the SciStream scope of this s2cs; `subject` is the identity's stable id (`sub`).
    case valid(username: String?, subject: String? = nil)
    /// No token (empty, or the `INVALID_TOKEN` placeholder): UNAUTHENTICATED.
    case missing(message: String)
    /// Inactive, expired, unknown, or without this s2cs's scope: UNAUTHENTICATED.
    case invalid(message: String, reason: String)
    /// The token could not be checked (auth server unreachable or slow, or too many checks at once):
    /// UNAVAILABLE. The request is refused, never let through.
    case unavailable(message: String)
    /// Globus Auth refused this s2cs's own client id and secret (HTTP 401 or 403), so no token can be
    /// checked: UNAVAILABLE. s2cs words it with the options that give the credentials.
    case credentialsRefused(AuthError)

    /// What a refusal says, naming no command-line option.
    public static func text(_ verdict: TokenVerdict) -> String {
        switch verdict {
        case .valid: "valid"
        case .missing(let message), .unavailable(let message), .invalid(let message, _): message
        case .credentialsRefused(let error): "s2cs cannot check tokens: \(error)"
        }
    }
}

/// s2cs's side of authentication: checks each RPC's token by Globus Auth introspection (HTTP basic
/// auth with the s2cs's client id and secret). It must be active and carry
/// `https://auth.globus.org/scopes/<client-id>/scistream`.
///
/// Verdicts are cached by the token's SHA-256 (the token itself is not kept): a valid token until
/// its `exp`, an invalid one for `negativeTTL`; concurrent checks of one token share one
/// introspection. So a session setup (request, hello, update) costs at most one round trip.
/// An unreachable server is not cached: the next RPC tries again.
public actor TokenChecker {
    public nonisolated let clientID: String
    public nonisolated let requiredScope: String
    private var clientSecret: String
    private let auth: GlobusAuthClient
    private let logger: Logger
    private let negativeTTL: Duration
    private let fallbackTTL: Duration
    private let maxEntries: Int
    /// The wall clock (token expiries are wall-clock times); tests pass their own.
    private let now: @Sendable () -> Date
    /// Words a failed check for the log: s2cs passes its own wording, which names its options.
    private let describe: @Sendable (TokenVerdict) -> String

    private struct Entry {
        let verdict: TokenVerdict
        let until: Date
    }
    private var cache: [String: Entry] = [:]
    private var inFlight: [String: Task<TokenVerdict, Never>] = [:]
    private let maxConcurrentIntrospections: Int
    /// Introspections one client may have in flight: a share of `maxConcurrentIntrospections`, so
    /// that one address's made-up tokens cannot take them all.
    private let maxIntrospectionsPerClient: Int
    private var inFlightByClient: [String: Int] = [:]
    private let failureBackoff: Duration
    private var unavailableUntil: Date? = nil
    private var lastUnavailable: TokenVerdict? = nil
    /// Introspection calls made (for tests and the debug log).
    public private(set) var introspections = 0

    public init(clientID: String, clientSecret: String, auth: GlobusAuthClient, logger: Logger,
                negativeTTL: Duration = .seconds(10), fallbackTTL: Duration = .seconds(60), maxEntries: Int = 10_000,
                maxConcurrentIntrospections: Int = 32, maxIntrospectionsPerClient: Int? = nil, failureBackoff: Duration = .seconds(1),
                now: @escaping @Sendable () -> Date = { Date() },
                describe: @escaping @Sendable (TokenVerdict) -> String = TokenVerdict.text) {
        self.maxConcurrentIntrospections = maxConcurrentIntrospections
        self.maxIntrospectionsPerClient = maxIntrospectionsPerClient ?? max(1, maxConcurrentIntrospections / 4)
        self.failureBackoff = failureBackoff
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.requiredScope = GlobusAuth.scistreamScope(clientID)
        self.auth = auth
        self.logger = logger
        self.negativeTTL = negativeTTL
        self.fallbackTTL = fallbackTTL
        self.maxEntries = maxEntries
        self.now = now
        self.describe = describe
    }

    /// A new client secret (a reload after the secret was rotated): checks from now on use it, and
    /// the cached verdicts stay (they were Globus Auth's answers about the tokens, not the secret).
    public func setClientSecret(_ secret: String) {
        clientSecret = secret
        unavailableUntil = nil
        lastUnavailable = nil
    }

    /// Where introspection goes.
    public nonisolated var introspectURL: String { auth.introspectURL }

    var missingMessage: String { "Authentication token is missing for scope \(clientID)" }
    var invalidMessage: String { "Authentication token is invalid for scope \(clientID)" }

    /// Checks one RPC's token, sent by `client` (who shares the introspection limit: at most
    /// `maxIntrospectionsPerClient` of its checks wait for Globus Auth at once; nil: not counted).
    public func check(_ token: String, client: String? = nil) async -> TokenVerdict {
        if token.isEmpty || token == GlobusAuth.noToken {
            return .missing(message: missingMessage)
        }
        let key = PKCE.base64URL(PKCE.sha256(Array(token.utf8)))
        if let entry = cache[key] {
            if entry.until > now() { return entry.verdict }
            cache[key] = nil
        }
        if let pending = inFlight[key] {
            return await pending.value
        }
        // Bounded: a flood of made-up tokens must not open thousands of connections to Globus Auth.
        if let client, inFlightByClient[client, default: 0] >= maxIntrospectionsPerClient {
            logger.warning("token check refused: too many checks in flight for one client", ["client": client, "max": "\(maxIntrospectionsPerClient)"])
            return .unavailable(message: "s2cs is checking too many tokens from your address at once: retry in a moment")
        }
        guard inFlight.count < maxConcurrentIntrospections else {
            logger.warning("token check refused: too many checks in flight", ["max": "\(maxConcurrentIntrospections)"])
            return .unavailable(message: "s2cs is checking too many tokens at once: retry in a moment")
        }
        // After Globus Auth failed to answer, wait a moment before asking again (not per token: the
        // failure is the server's, and each new token would otherwise cost a full timeout).
        if let until = unavailableUntil, until > now(), let verdict = lastUnavailable {
            return verdict
        }
        let task = Task { await self.introspect(token, key: key) }
        inFlight[key] = task
        if let client { inFlightByClient[client, default: 0] += 1 }
        let verdict = await task.value
        inFlight[key] = nil
        if let client {
            let left = inFlightByClient[client, default: 1] - 1
            inFlightByClient[client] = left > 0 ? left : nil
        }
        return verdict
    }

    private func introspect(_ token: String, key: String) async -> TokenVerdict {
        introspections += 1
        // The token came off the wire: its first characters are logged only if they look like a token.
        let head = token.prefix(6)
        let prefix = head.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } ? head + "…" : "(not a token)"
        let result: Introspection
        do {
            result = try await auth.introspect(token, clientID: clientID, clientSecret: clientSecret)
        } catch {
            let verdict = unavailable(error)
            logger.warning("token check failed", ["reason": describe(verdict)])
            lastUnavailable = verdict
            unavailableUntil = now().addingTimeInterval(failureBackoff.inSeconds)
            return verdict
        }
        let checkedAt = now()
        let nowSeconds = Int(checkedAt.timeIntervalSince1970)
        let verdict: TokenVerdict
        var until = checkedAt.addingTimeInterval(negativeTTL.inSeconds)
        if !result.active {
            verdict = .invalid(message: invalidMessage, reason: "inactive (expired, revoked or unknown)")
        } else if let exp = result.expiresAt, exp <= nowSeconds {
            verdict = .invalid(message: invalidMessage, reason: "expired")
        } else if !result.scopes.contains(requiredScope) {
            verdict = .invalid(message: invalidMessage, reason: "lacks the scope \(requiredScope)")
        } else {
            verdict = .valid(username: result.username, subject: result.subject)
            until = result.expiresAt.map { Date(timeIntervalSince1970: TimeInterval($0)) }
                ?? checkedAt.addingTimeInterval(fallbackTTL.inSeconds)
        }
        store(key, verdict, until: until)
        if case .valid = verdict { unavailableUntil = nil }
        switch verdict {
        case .valid(let username, _):
            logger.debug("token accepted", ["token": prefix, "user": username ?? "?", "cached_for": "\(Int(until.timeIntervalSince(checkedAt)))s"])
        case .invalid(_, let reason):
            logger.debug("token refused", ["token": prefix, "reason": reason])
        default:
            break
        }
        return verdict
    }

    private func unavailable(_ error: AuthError) -> TokenVerdict {
        switch error {
        case .httpStatus(_, let status, _, _) where status == 401 || status == 403:
            return .credentialsRefused(error)
        default:
            return .unavailable(message: "s2cs cannot check the token: \(error)")
        }
    }

    /// Caches a verdict. When the cache is full, expired entries go first, then refusals; valid
    /// verdicts are kept (a flood of bad tokens must not make good users pay an introspection each),
    /// and a refusal that finds no room is simply not cached.
    private func store(_ key: String, _ verdict: TokenVerdict, until: Date) {
        if cache.count >= maxEntries {
            let current = now()
            cache = cache.filter { $0.value.until > current }
        }
        if cache.count >= maxEntries {
            cache = cache.filter { if case .valid = $0.value.verdict { true } else { false } }
        }
        let isValid: Bool = if case .valid = verdict { true } else { false }
        guard cache.count < maxEntries || (isValid && evictOneValid()) else { return }
        cache[key] = Entry(verdict: verdict, until: until)
    }

    /// Makes room for a new valid verdict by dropping the one that expires soonest.
    private func evictOneValid() -> Bool {
        guard let soonest = cache.min(by: { $0.value.until < $1.value.until })?.key else { return false }
        cache[soonest] = nil
        return true
    }

}
