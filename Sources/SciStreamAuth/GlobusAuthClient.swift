import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Synchronization
import SciStreamSystem

/// Tokens granted by the token endpoint (authorization code or refresh).
public struct TokenGrant: Sendable, Equatable {
    public var accessToken: String
    public var refreshToken: String?
    /// Seconds the access token lives from now.
    public var expiresIn: Int
    public var resourceServer: String
    public var scope: String
}

/// What token introspection says about a token (RFC 7662, as Globus Auth answers it).
public struct Introspection: Sendable, Equatable {
    public var active: Bool
    /// The scopes granted to the token.
    public var scopes: [String]
    /// Expiry, seconds since the Unix epoch.
    public var expiresAt: Int?
    public var username: String?
    public var clientID: String?
    /// The identity's stable id (`sub`): what owns a session.
    public var subject: String?

    public init(active: Bool, scopes: [String] = [], expiresAt: Int? = nil, username: String? = nil, clientID: String? = nil, subject: String? = nil) {
        self.active = active
        self.subject = subject
        self.scopes = scopes
        self.expiresAt = expiresAt
        self.username = username
        self.clientID = clientID
    }
}

/// The four Globus Auth calls SciStream makes, over HTTPS with Foundation's URLSession: the token
/// endpoint (code exchange, refresh), revocation, and introspection. Every call is bounded by
/// `timeout`; nothing is cached by URLSession and no cookies are kept.
public final class GlobusAuthClient: Sendable {
    public let baseURL: URL
    public let timeout: Duration
    private let sessionSlot = Mutex<URLSession?>(nil)
    private let challenges = DecliningChallenges()

    public init(baseURL: URL, timeout: Duration = .seconds(30)) {
        self.baseURL = baseURL
        self.timeout = timeout
    }

    /// The URLSession, made on the first request: making one has FoundationNetworking create cache
    /// folders under HOME, which a command that never talks to Globus Auth should not do.
    private var session: URLSession {
        sessionSlot.withLock { slot in
            if let session = slot { return session }
            let configuration = URLSessionConfiguration.ephemeral
            let seconds = timeout.inSeconds
            // URLSession's own limits sit just above ours, so that our deadline (and its message) wins.
            configuration.timeoutIntervalForRequest = seconds + 1
            configuration.timeoutIntervalForResource = seconds + 1
            configuration.urlCache = nil
            configuration.httpCookieStorage = nil
            configuration.httpShouldSetCookies = false
            configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
            // A delegate that declines HTTP authentication challenges: a 401 is an answer to report
            // (wrong client id or secret), not a prompt for credentials.
            let session = URLSession(configuration: configuration, delegate: challenges, delegateQueue: nil)
            slot = session
            return session
        }
    }

    deinit { sessionSlot.withLock { $0?.finishTasksAndInvalidate() } }

    public var tokenURL: String { baseURL.absoluteString + "/v2/oauth2/token" }
    public var revokeURL: String { baseURL.absoluteString + "/v2/oauth2/token/revoke" }
    public var introspectURL: String { baseURL.absoluteString + "/v2/oauth2/token/introspect" }
    public var authorizeURL: String { baseURL.absoluteString + "/v2/oauth2/authorize" }

    // MARK: the calls

    /// Exchanges an authorization code (native-app flow: `client_id` and the PKCE `code_verifier`, no secret).
    public func exchangeCode(_ code: String, verifier: String, redirectURI: String, clientID: String, resourceServer: String) async throws(AuthError) -> TokenGrant {
        let json = try await post(tokenURL, form: [
            ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", redirectURI),
            ("client_id", clientID), ("code_verifier", verifier),
        ])
        return try Self.grant(from: json, resourceServer: resourceServer, url: tokenURL)
    }

    /// Gets a new access token with a refresh token.
    public func refresh(_ refreshToken: String, clientID: String, resourceServer: String) async throws(AuthError) -> TokenGrant {
        let json = try await post(tokenURL, form: [
            ("grant_type", "refresh_token"), ("refresh_token", refreshToken), ("client_id", clientID),
        ])
        return try Self.grant(from: json, resourceServer: resourceServer, url: tokenURL)
    }

    /// Revokes an access or refresh token, so that it is of no further use anywhere.
    public func revoke(_ token: String, clientID: String) async throws(AuthError) {
        _ = try await post(revokeURL, form: [("token", token), ("client_id", clientID)])
    }

    /// Asks whether a token is active and what it may do. The resource server authenticates with
    /// HTTP basic auth (its client id and secret).
    public func introspect(_ token: String, clientID: String, clientSecret: String) async throws(AuthError) -> Introspection {
        let credentials = Data("\(clientID):\(clientSecret)".utf8).base64EncodedString()
        let json = try await post(introspectURL, form: [("token", token)], authorization: "Basic \(credentials)")
        guard let active = json["active"] as? Bool else {
            throw .badResponse(url: introspectURL, reason: "no boolean 'active' field")
        }
        let scopes = (json["scope"] as? String).map { $0.split(separator: " ").map(String.init) } ?? []
        let exp = (json["exp"] as? NSNumber)?.intValue
        return Introspection(active: active, scopes: scopes, expiresAt: exp,
                             username: json["username"] as? String, clientID: json["client_id"] as? String,
                             subject: json["sub"] as? String)
    }

    // MARK: HTTP

    /// POSTs a form and returns the JSON object of a 2xx answer; anything else is an `AuthError`.
    func post(_ urlText: String, form: [(String, String)], authorization: String? = nil) async throws(AuthError) -> [String: Any] {
        guard let url = URL(string: urlText) else { throw .invalidServiceURL(urlText, reason: "not a URL") }
        var request = URLRequest(url: url)
        request.httpMethod = "POST"
        request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        request.setValue("scistream-swift", forHTTPHeaderField: "User-Agent")
        if let authorization { request.setValue(authorization, forHTTPHeaderField: "Authorization") }
        request.httpBody = Data(Self.formEncode(form).utf8)
        let (data, status) = try await send(request, url: urlText)
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        guard (200..<300).contains(status) else {
            throw .httpStatus(url: urlText, status: status, oauthError: object?["error"] as? String, detail: Self.errorDetail(object, data))
        }
        guard let object else {
            throw .badResponse(url: urlText, reason: "the body is not a JSON object (\(data.count) bytes)")
        }
        return object
    }

    private func send(_ request: URLRequest, url: String) async throws(AuthError) -> (Data, Int) {
        let limit = timeout
        let outcome: Result<(Data, URLResponse), any Error> = await withCheckedContinuation { continuation in
            // A completion handler and our own timer, not URLSession's async API: cancelling that API's
            // task through Swift task cancellation can deadlock FoundationNetworking on Linux (the task's
            // status lock against the session's queue), so we never cancel it that way. The timer cancels
            // the URLSession task from plain code, and whichever finishes first answers.
            let once = Once(continuation)
            let task = session.dataTask(with: request) { data, response, error in
                if let error {
                    once.resume(.failure(error))
                } else if let response {
                    once.resume(.success((data ?? Data(), response)))
                } else {
                    once.resume(.failure(URLError(.badServerResponse)))
                }
            }
            // A Dispatch timer rather than a sleeping task: it fires on time even when the cooperative
            // pool is busy. After an answer it finds the continuation resumed and does nothing.
            DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Self.nanoseconds(limit))) {
                if once.resume(.failure(DeadlineExceeded())) { task.cancel() }
            }
            task.resume()
        }
        switch outcome {
        case .success(let (data, response)):
            guard let http = response as? HTTPURLResponse else {
                throw .badResponse(url: url, reason: "not an HTTP answer")
            }
            return (data, http.statusCode)
        case .failure(let error):
            if error is DeadlineExceeded || (error as? URLError)?.code == .timedOut {
                throw .unreachable(url: url, reason: "no answer within \(limit)")
            }
            if let status = challenges.takeRefusal(url) {
                throw .httpStatus(url: url, status: status, oauthError: nil, detail: "the credentials were refused")
            }
            throw .unreachable(url: url, reason: Self.describe(error))
        }
    }

    static func nanoseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(clamping: seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    static func formEncode(_ form: [(String, String)]) -> String {
        let unreserved = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~".utf8)
        func encode(_ text: String) -> String {
            var out = ""
            for byte in text.utf8 {
                if unreserved.contains(byte) { out.unicodeScalars.append(Unicode.Scalar(byte)) }
                else { out += String(format: "%%%02X", byte) }
            }
            return out
        }
        return form.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }

    static func grant(from json: [String: Any], resourceServer: String, url: String) throws(AuthError) -> TokenGrant {
        // With several resource servers, Globus puts the others in `other_tokens`: take ours.
        var candidates = [json]
        if let others = json["other_tokens"] as? [[String: Any]] { candidates += others }
        let chosen = candidates.first { ($0["resource_server"] as? String) == resourceServer } ?? json
        guard let access = chosen["access_token"] as? String, !access.isEmpty else {
            throw .badResponse(url: url, reason: "no access_token in the answer")
        }
        let expiresIn = (chosen["expires_in"] as? NSNumber)?.intValue ?? 0
        return TokenGrant(accessToken: access,
                          refreshToken: (chosen["refresh_token"] as? String).flatMap { $0.isEmpty ? nil : $0 },
                          expiresIn: expiresIn,
                          resourceServer: chosen["resource_server"] as? String ?? resourceServer,
                          scope: chosen["scope"] as? String ?? "")
    }

    /// A short, printable reason from an error body: OAuth's `error_description`, or Globus's `errors[0].detail`.
    static func errorDetail(_ object: [String: Any]?, _ data: Data) -> String? {
        var text: String? = object?["error_description"] as? String
        if text == nil, let errors = object?["errors"] as? [[String: Any]], let first = errors.first {
            text = (first["detail"] as? String) ?? (first["title"] as? String)
        }
        if text == nil, object == nil, !data.isEmpty {
            text = String(decoding: data.prefix(200), as: UTF8.self)
        }
        guard let text else { return nil }
        let printable = text.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7f }
        return String(String.UnicodeScalarView(printable).prefix(200))
    }

    static func describe(_ error: any Error) -> String {
        guard let error = error as? URLError else { return "\(error)" }
        switch error.code {
        case .timedOut: return "no answer in time"
        case .cannotConnectToHost: return "connection refused (is the server running, and is the URL right?)"
        case .cannotFindHost, .dnsLookupFailed: return "cannot resolve the host name"
        case .networkConnectionLost: return "the connection was lost"
        case .notConnectedToInternet: return "no network connection"
        case .secureConnectionFailed: return "the TLS handshake failed"
        case .serverCertificateUntrusted, .serverCertificateHasBadDate, .serverCertificateNotYetValid,
             .serverCertificateHasUnknownRoot, .clientCertificateRejected:
            return "its TLS certificate is not trusted"
        case .cancelled: return "the request was cancelled"
        case .badServerResponse: return "a malformed HTTP answer"
        default: return "network error \(error.code.rawValue)"
        }
    }
}

/// Declines HTTP authentication challenges (a 401 with `WWW-Authenticate`): for us a 401 is an answer
/// to report (wrong client id or secret), not a prompt for credentials. URLSession then fails the
/// task as cancelled; the status is recorded by URL so that the error can say what happened.
/// Declines redirects too: tokens and the client secret go to the configured server and nowhere else,
/// so a 3xx is reported as it is.
private final class DecliningChallenges: NSObject, URLSessionTaskDelegate, Sendable {
    private let refused = Mutex<[String: Int]>([:])

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
                    completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        let method = challenge.protectionSpace.authenticationMethod
        guard method == NSURLAuthenticationMethodHTTPBasic || method == NSURLAuthenticationMethodDefault
                || method == NSURLAuthenticationMethodHTTPDigest else {
            completionHandler(.performDefaultHandling, nil)  // server trust and the like: the system's checks
            return
        }
        let status = (challenge.failureResponse as? HTTPURLResponse)?.statusCode ?? 401
        if let url = task.originalRequest?.url?.absoluteString {
            refused.withLock { $0[url] = status }
        }
        completionHandler(.cancelAuthenticationChallenge, nil)
    }

    /// The status of a declined challenge for `url`, once (consumed).
    func takeRefusal(_ url: String) -> Int? {
        refused.withLock { $0.removeValue(forKey: url) }
    }
}

/// The timer's verdict: the request took longer than the client's timeout.
struct DeadlineExceeded: Error {}

/// Resumes a continuation once, from whichever side gets there first.
private final class Once<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, Never>?>

    init(_ continuation: CheckedContinuation<T, Never>) {
        self.continuation = Mutex(continuation)
    }

    /// Resumes with `value`; false if it was already resumed.
    @discardableResult
    func resume(_ value: T) -> Bool {
        let taken = continuation.withLock { slot -> CheckedContinuation<T, Never>? in
            defer { slot = nil }
            return slot
        }
        guard let taken else { return false }
        taken.resume(returning: value)
        return true
    }
}
