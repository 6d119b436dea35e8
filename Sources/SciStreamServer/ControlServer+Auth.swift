import Foundation
import SciStreamWire
import SciStreamSystem
import SciStreamAuth
import SciStreamCommandLine
import SciStreamPolicy

extension ServerConfiguration {
    /// How long s2cs waits for Globus Auth to answer one introspection.
    static let introspectionTimeout: Duration = .seconds(5)

    /// The token checker for this configuration, or nil when authentication is off.
    func makeTokenChecker(logger: Logger) throws(AuthError) -> TokenChecker? {
        guard authenticationEnabled, let given = clientID, let secret = clientSecret else { return nil }
        // The id goes into the scope string and into every refusal message: it must be a plain id.
        guard let id = try? GlobusAuth.validateScopeID(given) else {
            throw .invalidClientID(given)
        }
        var environment: [String: String] = [:]
        if let authServiceURL { environment[GlobusAuth.serviceURLVariable] = authServiceURL }
        let base = try GlobusAuth.serviceURL(environment: environment)
        return TokenChecker(clientID: id, clientSecret: secret,
                            auth: GlobusAuthClient(baseURL: base, timeout: Self.introspectionTimeout), logger: logger,
                            describe: { ErrorWording.tokenVerdict($0, clientID: id) })
    }
}

/// Who sent a request: its address, and with authentication on, the identity its token belongs to.
struct Caller: Sendable {
    /// The client's IP address (no port).
    let address: String
    /// The identity's stable id (Globus `sub`); nil with authentication off.
    let subject: String?
    /// The identity's username, for logs and `--allowed-identities`.
    let username: String?
    /// An operator: an identity in `--admin-identities`, or whoever reaches the local admin socket.
    /// It sees every session with its owner and may release any; what it does is audited as admin.
    var admin = false

    static func anonymous(_ address: String) -> Caller { Caller(address: address, subject: nil, username: nil) }

    /// Whoever reaches the local admin socket (`--admin-socket`, mode 0600: s2cs's own user or root).
    static let localAdmin = Caller(address: "local", subject: nil, username: "admin-socket", admin: true)
}

extension ControlServer {
    /// Checks the token of a request before anything else happens: the caller to go on with, or the
    /// refusal to send. With authentication off, every request goes on, anonymously.
    func authenticate(_ message: Message, client: String, log: Logger, localAdmin: Bool = false) async -> Result<Caller, RefusedRequest> {
        if localAdmin { return .success(.localAdmin) }
        guard let checker = tokenChecker, let token = message.bearerToken else { return .success(.anonymous(client)) }
        let status: Status
        let reason: String
        // One address (an IPv6 client: its /64) gets a share of the introspections in flight.
        let verdict = await checker.check(token, client: IPAddress.clientKey(client))
        switch verdict {
        case .valid(let username, let subject):
            let admin = adminIdentities.map { IdentityPattern.allows($0, username: username) } ?? false
            if !admin, let patterns = allowedIdentities, !IdentityPattern.allows(patterns, username: username) {
                log.warning("request refused: identity not in --allowed-identities", ["user": username ?? "?"])
                metrics.authenticated("identity_refused")
                return .failure(RefusedRequest(message.refusal(Status(.permissionDenied, "this s2cs does not serve your identity: ask its operator to add it to --allowed-identities"))))
            }
            // Without a `sub`, the username is the identity (both are stable for a Globus account); a
            // token with neither names nobody, and a session must belong to somebody.
            guard let identity = subject ?? username, !identity.isEmpty else {
                log.warning("request refused: the token names no identity (no sub, no username)")
                metrics.authenticated("invalid")
                return .failure(RefusedRequest(message.refusal(Status(.unauthenticated, "the token names no identity: log in again with s2uc login"))))
            }
            metrics.authenticated("valid")
            return .success(Caller(address: client, subject: identity, username: username, admin: admin))
        case .missing(let text):
            (status, reason) = (Status(.unauthenticated, text), "no token")
            metrics.authenticated("missing")
        case .invalid(let text, let why):
            (status, reason) = (Status(.unauthenticated, text), why)
            metrics.authenticated("invalid")
        case .unavailable, .credentialsRefused:
            (status, reason) = (Status(.unavailable, ErrorWording.tokenVerdict(verdict, clientID: checker.clientID)), "cannot check tokens")
            metrics.authenticated("unavailable")
        }
        // Never the token itself: the kind of request, the verdict and why.
        log.info("request refused", ["kind": "0x\(String(message.kind, radix: 16))", "status": "\(status.code)", "reason": reason])
        return .failure(RefusedRequest(message.refusal(status)))
    }
}

/// The reply to a request refused before it was handled.
struct RefusedRequest: Error {
    let reply: Message
    init(_ reply: Message) { self.reply = reply }
}

extension Message {
    /// The bearer token a request carries; nil for replies.
    var bearerToken: String? {
        switch self {
        case .request(let request): request.token
        case .hello(let hello): hello.token
        case .update(let update): update.token
        case .release(let release): release.token
        case .list(let list): list.token
        case .requestReply, .helloReply, .updateReply, .releaseReply, .listReply, .error: nil
        }
    }

    /// The reply of this request's own kind carrying `status`, so that the client reads it where it
    /// reads any failure of that request.
    func refusal(_ status: Status) -> Message {
        switch self {
        case .request: .requestReply(RequestReply(status: status, listeners: [], prodListeners: []))
        case .hello: .helloReply(status)
        case .update: .updateReply(UpdateReply(status: status, listeners: []))
        case .release: .releaseReply(status)
        case .list: .listReply(ListReply(status: status, sessions: []))
        case .requestReply, .helloReply, .updateReply, .releaseReply, .listReply, .error: .error(status)
        }
    }
}
