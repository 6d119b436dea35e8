import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import COpenSSL

/// A fake Globus Auth on loopback (HTTP/1.1, one request per connection, `Connection: close`), for
/// tests only. It implements what SciStream uses, strictly enough to catch a wrong request:
///
/// - `GET /v2/oauth2/authorize`: checks the native-app parameters and issues a code bound to the
///   PKCE challenge (what the browser page would show; tests usually call `authorize(url:)` directly);
/// - `POST /v2/oauth2/token`: `authorization_code` (verifies `code_verifier` against the challenge,
///   `client_id`, `redirect_uri`; codes are single-use) and `refresh_token`;
/// - `POST /v2/oauth2/token/introspect`: HTTP basic auth with the resource server's id and secret;
/// - `POST /v2/oauth2/token/revoke`: records the revocation; the token turns inactive.
///
/// It counts calls, can mint tokens directly, deactivate them, or stall (accept and never answer).
///
/// It serves on its own threads with blocking sockets, not on the cooperative pool: a test run that
/// keeps the pool busy must not make the fake slow to answer (the tests measure timeouts).
public final class FakeGlobusAuth: Sendable {
    public let clientID: String
    public let clientSecret: String
    public let port: UInt16
    public var baseURL: String { "http://127.0.0.1:\(port)" }
    public static let username = "ada@example.org"
    public static let subject = "00000000-0000-4000-8000-000000000001"

    public struct Issued: Sendable {
        public var scope: String
        public var resourceServer: String
        public var expiresAt: Int
        public var active: Bool
        /// Who the token belongs to (`username` and `sub` in introspection).
        public var username: String = FakeGlobusAuth.username
        public var subject: String = FakeGlobusAuth.subject
    }

    struct PendingCode {
        let clientID: String
        let redirectURI: String
        let scope: String
        let challenge: String
    }

    struct State {
        var codes: [String: PendingCode] = [:]
        var access: [String: Issued] = [:]
        var refresh: [String: (scope: String, resourceServer: String, clientID: String, active: Bool)] = [:]
        var revoked: [String] = []
        var requests: [String] = []
        var introspections = 0
        var grants: [String] = []
        var accessTokenLifetime = 3600
        var stalled = false
        var slowForUnknownTokens: Duration? = nil
        var redirect: String? = nil
        var open: Set<Int32> = []
        var listener: Int32 = -1
    }

    private let state = Mutex(State())

    public init(clientID: String = "s2cs-client-id", clientSecret: String = "s2cs-secret") throws {
        self.clientID = clientID
        self.clientSecret = clientSecret
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FakeError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw FakeError("bind/listen: \(String(cString: strerror(errno)))")
        }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        port = UInt16(bigEndian: address.sin_port)
        state.withLock { $0.listener = fd }
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "fake-globus-auth"
        thread.start()
    }

    /// Stops listening and closes every open connection (a stalled one included).
    public func stop() {
        let (listener, open) = state.withLock { state -> (Int32, Set<Int32>) in
            defer { state.listener = -1; state.open = [] }
            return (state.listener, state.open)
        }
        // shutdown wakes the threads blocked on these descriptors; each thread closes its own.
        if listener >= 0 { _ = shutdown(listener, Int32(SHUT_RDWR)) }
        for fd in open { _ = shutdown(fd, Int32(SHUT_RDWR)) }
    }

    deinit { stop() }

    private func acceptLoop(_ listener: Int32) {
        defer { close(listener) }
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)  // the processes tests start must not inherit it
            let admitted = state.withLock { state -> Bool in
                guard state.listener >= 0 else { return false }
                state.open.insert(client)
                return true
            }
            guard admitted else { close(client); return }
            let thread = Thread { [self] in
                serve(client)
                state.withLock { _ = $0.open.remove(client) }
                close(client)
            }
            thread.start()
        }
    }

    // MARK: what the tests look at and change

    /// "METHOD /path" of every request, in order.
    public var requests: [String] { state.withLock { $0.requests } }
    public var introspections: Int { state.withLock { $0.introspections } }
    /// The grant types of the token calls that succeeded, in order.
    public var grants: [String] { state.withLock { $0.grants } }
    public var revoked: [String] { state.withLock { $0.revoked } }
    /// Lifetime (seconds) of the access tokens issued from now on.
    public var accessTokenLifetime: Int {
        get { state.withLock { $0.accessTokenLifetime } }
        set { state.withLock { $0.accessTokenLifetime = newValue } }
    }
    /// When set, requests are read and never answered.
    public var stalled: Bool {
        get { state.withLock { $0.stalled } }
        set { state.withLock { $0.stalled = newValue } }
    }
    /// When set, the introspection of a token this server never issued (a made-up one) is answered
    /// only after this long.
    public var slowForUnknownTokens: Duration? {
        get { state.withLock { $0.slowForUnknownTokens } }
        set { state.withLock { $0.slowForUnknownTokens = newValue } }
    }
    /// When set, every request is answered `307 Temporary Redirect` to this base URL.
    public var redirect: String? {
        get { state.withLock { $0.redirect } }
        set { state.withLock { $0.redirect = newValue } }
    }

    public func issued(_ accessToken: String) -> Issued? { state.withLock { $0.access[accessToken] } }

    /// Issues an access token (and a refresh token) directly, as a login for `scope` would.
    public func mint(scope: String, lifetime: Int = 3600, nativeClientID: String = "4787c84e-9c55-4881-b941-cb6720cea11c",
                     username: String = FakeGlobusAuth.username, subject: String = FakeGlobusAuth.subject) -> (access: String, refresh: String) {
        let access = Self.newToken("Ag"), refresh = Self.newToken("Rf")
        let resourceServer = Self.resourceServer(of: scope)
        state.withLock { state in
            state.access[access] = Issued(scope: scope, resourceServer: resourceServer, expiresAt: Self.now + lifetime, active: true,
                                          username: username, subject: subject)
            state.refresh[refresh] = (scope, resourceServer, nativeClientID, true)
        }
        return (access, refresh)
    }

    /// Makes a token inactive, as if revoked elsewhere.
    public func deactivate(_ token: String) {
        state.withLock { $0.access[token]?.active = false }
    }

    /// What the user's browser does with the authorize URL: checks it and returns the code Globus would show.
    public func authorize(url text: String) throws -> String {
        guard let components = URLComponents(string: text) else { throw FakeError("not a URL: \(text)") }
        guard components.path == "/v2/oauth2/authorize" else { throw FakeError("authorize path is \(components.path)") }
        var query: [String: String] = [:]
        for item in components.queryItems ?? [] { query[item.name] = item.value ?? "" }
        return try authorize(query: query)
    }

    func authorize(query: [String: String]) throws -> String {
        func need(_ name: String) throws -> String {
            guard let value = query[name], !value.isEmpty else { throw FakeError("authorize: missing \(name)") }
            return value
        }
        let client = try need("client_id")
        let redirect = try need("redirect_uri")
        let scope = try need("scope")
        let challenge = try need("code_challenge")
        guard redirect == baseURL + "/v2/web/auth-code" else { throw FakeError("authorize: redirect_uri is \(redirect)") }
        guard try need("response_type") == "code" else { throw FakeError("authorize: response_type must be code") }
        guard try need("code_challenge_method") == "S256" else { throw FakeError("authorize: code_challenge_method must be S256") }
        guard challenge.count == 43 else { throw FakeError("authorize: a S256 challenge is 43 characters, got \(challenge.count)") }
        guard try need("access_type") == "offline" else { throw FakeError("authorize: access_type must be offline for a refresh token") }
        guard scope.hasPrefix("https://auth.globus.org/scopes/"), scope.hasSuffix("/scistream") else {
            throw FakeError("authorize: unexpected scope \(scope)")
        }
        let code = Self.newToken("code")
        state.withLock { $0.codes[code] = PendingCode(clientID: client, redirectURI: redirect, scope: scope, challenge: challenge) }
        return code
    }

    // MARK: HTTP

    private func serve(_ fd: Int32) {
        guard let request = try? HTTPRequest.read(from: fd) else { return }
        state.withLock { $0.requests.append("\(request.method) \(request.path)") }
        if stalled {
            // Never answer: wait until the client leaves or stop() shuts the socket down.
            var buffer = [UInt8](repeating: 0, count: 512)
            while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
            return
        }
        let target = redirect
        let (status, body) = target == nil ? respond(to: request) : (307, ["error": "moved"])
        let json = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data("{}".utf8)
        let reason = [200: "OK", 307: "Temporary Redirect", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"][status] ?? "Error"
        var head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json\r\nContent-Length: \(json.count)\r\nConnection: close\r\n"
        if status == 401 { head += "WWW-Authenticate: Basic realm=\"fake-globus-auth\"\r\n" }
        if let target { head += "Location: \(target)\(request.path)\r\n" }
        head += "\r\n"
        HTTPRequest.writeAll(fd, Array(head.utf8) + [UInt8](json))
    }

    private func respond(to request: HTTPRequest) -> (Int, [String: Any]) {
        switch (request.method, request.path) {
        case ("GET", "/v2/oauth2/authorize"):
            do {
                let code = try authorize(query: request.query)
                return (200, ["authorization_code": code])
            } catch {
                return (400, ["error": "invalid_request", "error_description": "\(error)"])
            }
        case ("POST", "/v2/oauth2/token"):
            return token(request.form)
        case ("POST", "/v2/oauth2/token/introspect"):
            return introspect(request)
        case ("POST", "/v2/oauth2/token/revoke"):
            return revoke(request.form)
        case (_, "/v2/oauth2/token"), (_, "/v2/oauth2/token/introspect"), (_, "/v2/oauth2/token/revoke"):
            return (405, ["error": "method_not_allowed"])
        default:
            return (404, ["error": "not_found", "error_description": "no such endpoint: \(request.path)"])
        }
    }

    private func token(_ form: [String: String]) -> (Int, [String: Any]) {
        func invalid(_ text: String) -> (Int, [String: Any]) { (400, ["error": "invalid_grant", "error_description": text]) }
        switch form["grant_type"] {
        case "authorization_code":
            guard let code = form["code"], let verifier = form["code_verifier"], let client = form["client_id"] else {
                return (400, ["error": "invalid_request", "error_description": "code, code_verifier and client_id are required"])
            }
            let pending = state.withLock { state -> PendingCode? in
                defer { state.codes[code] = nil }  // single use, even when the exchange fails
                return state.codes[code]
            }
            guard let pending else { return invalid("unknown or used authorization code") }
            guard pending.clientID == client else { return invalid("client_id does not match the authorize request") }
            guard form["redirect_uri"] == pending.redirectURI else { return invalid("redirect_uri does not match the authorize request") }
            guard Self.challenge(of: verifier) == pending.challenge else { return invalid("code_verifier does not match the code_challenge") }
            let (access, refresh) = mint(scope: pending.scope, lifetime: accessTokenLifetime, nativeClientID: client)
            state.withLock { $0.grants.append("authorization_code") }
            return (200, grantBody(access: access, refresh: refresh, scope: pending.scope))
        case "refresh_token":
            guard let refresh = form["refresh_token"], let client = form["client_id"] else {
                return (400, ["error": "invalid_request", "error_description": "refresh_token and client_id are required"])
            }
            guard let entry = state.withLock({ $0.refresh[refresh] }), entry.active else { return invalid("unknown or revoked refresh token") }
            guard entry.clientID == client else { return invalid("refresh token issued to another client") }
            let access = Self.newToken("Ag")
            let lifetime = accessTokenLifetime
            state.withLock { state in
                state.access[access] = Issued(scope: entry.scope, resourceServer: entry.resourceServer, expiresAt: Self.now + lifetime, active: true)
                state.grants.append("refresh_token")
            }
            return (200, grantBody(access: access, refresh: refresh, scope: entry.scope))
        default:
            return (400, ["error": "unsupported_grant_type"])
        }
    }

    private func grantBody(access: String, refresh: String, scope: String) -> [String: Any] {
        ["access_token": access, "refresh_token": refresh, "expires_in": accessTokenLifetime, "scope": scope,
         "resource_server": Self.resourceServer(of: scope), "token_type": "Bearer", "state": "_default", "other_tokens": [Any]()]
    }

    private func introspect(_ request: HTTPRequest) -> (Int, [String: Any]) {
        let expected = "Basic " + Data("\(clientID):\(clientSecret)".utf8).base64EncodedString()
        guard request.headers["authorization"] == expected else {
            return (401, ["error": "invalid_client", "errors": [["code": "UNAUTHORIZED", "detail": "Invalid client credentials"]]])
        }
        guard let token = request.form["token"], !token.isEmpty else {
            return (400, ["error": "invalid_request", "error_description": "token is required"])
        }
        let (issued, slow) = state.withLock { state -> (Issued?, Duration?) in
            state.introspections += 1
            return (state.access[token], state.slowForUnknownTokens)
        }
        if issued == nil, let slow {
            Thread.sleep(forTimeInterval: Double(slow.components.seconds) + Double(slow.components.attoseconds) / 1e18)
        }
        guard let issued, issued.active, issued.expiresAt > Self.now else { return (200, ["active": false]) }
        return (200, ["active": true, "scope": issued.scope, "client_id": "4787c84e-9c55-4881-b941-cb6720cea11c",
                      "username": issued.username, "exp": issued.expiresAt, "iat": Self.now, "aud": [issued.resourceServer],
                      "sub": issued.subject, "token_type": "Bearer"])
    }

    private func revoke(_ form: [String: String]) -> (Int, [String: Any]) {
        guard let token = form["token"], !token.isEmpty else {
            return (400, ["error": "invalid_request", "error_description": "token is required"])
        }
        guard form["client_id"] != nil else {
            return (401, ["error": "invalid_client", "error_description": "client_id is required for a native app"])
        }
        state.withLock { state in
            state.revoked.append(token)
            state.access[token]?.active = false
            state.refresh[token]?.active = false
        }
        return (200, ["active": false])
    }

    // MARK: helpers

    static var now: Int { Int(Date().timeIntervalSince1970) }

    static func resourceServer(of scope: String) -> String {
        let parts = scope.split(separator: "/")
        return parts.count >= 2 ? String(parts[parts.count - 2]) : scope
    }

    static func newToken(_ prefix: String) -> String {
        var bytes = [UInt8](repeating: 0, count: 24)
        _ = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) }
        return prefix + base64URL(bytes)
    }

    /// base64url(SHA-256(verifier)) without padding, computed here independently of SciStreamAuth.
    static func challenge(of verifier: String) -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let bytes = Array(verifier.utf8)
        _ = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBufferPointer { EVP_Digest(input.baseAddress, input.count, $0.baseAddress, &length, EVP_sha256(), nil) }
        }
        return base64URL(digest)
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}

public struct FakeError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One HTTP/1.1 request: request line, headers (names lowercased), a Content-Length body.
struct HTTPRequest {
    var method = ""
    var path = ""
    var query: [String: String] = [:]
    var headers: [String: String] = [:]
    var body: [UInt8] = []

    var form: [String: String] {
        HTTPRequest.parseForm(String(decoding: body, as: UTF8.self))
    }

    /// Reads one request with blocking reads, each bounded by poll (10 s).
    static func read(from fd: Int32) throws -> HTTPRequest {
        func chunk() throws -> [UInt8] {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 10_000) > 0 else { throw FakeError("no request in time") }
            var buffer = [UInt8](repeating: 0, count: 65536)
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard count >= 0 else { throw FakeError("read: \(String(cString: strerror(errno)))") }
            return Array(buffer.prefix(count))
        }
        var buffer: [UInt8] = []
        let separator: [UInt8] = [13, 10, 13, 10]
        var headerEnd: Int? = nil
        while headerEnd == nil {
            let more = try chunk()
            if more.isEmpty { throw FakeError("closed before the headers ended") }
            buffer += more
            if buffer.count > 65536 { throw FakeError("headers too large") }
            if buffer.count >= 4 {
                for index in 0...(buffer.count - 4) where Array(buffer[index..<index + 4]) == separator {
                    headerEnd = index
                    break
                }
            }
        }
        let end = headerEnd!  // safe: the loop exits only once it is set
        let lines = String(decoding: buffer[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
        var request = HTTPRequest()
        let parts = lines[0].split(separator: " ")
        guard parts.count == 3 else { throw FakeError("bad request line") }
        request.method = String(parts[0])
        let target = String(parts[1])
        if let mark = target.firstIndex(of: "?") {
            request.path = String(target[..<mark])
            request.query = parseForm(String(target[target.index(after: mark)...]))
        } else {
            request.path = target
        }
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            request.headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(request.headers["content-length"] ?? "0") ?? 0
        guard length <= 1 << 20 else { throw FakeError("body too large") }
        if request.headers["expect"]?.lowercased() == "100-continue" {
            writeAll(fd, Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        var body = Array(buffer[(end + 4)...])
        while body.count < length {
            let more = try chunk()
            if more.isEmpty { throw FakeError("closed inside the body") }
            body += more
        }
        request.body = Array(body.prefix(length))
        return request
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }  // safe: offset < count
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return }
            offset += count
        }
    }

    static func parseForm(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let pieces = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) -> String {
                String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(part)
            }
            result[decode(pieces[0])] = pieces.count > 1 ? decode(pieces[1]) : ""
        }
        return result
    }
}
