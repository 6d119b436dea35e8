/// A failure of authentication, worded for the person at the shell: it says which scope, which
/// server URL or which file, and what to do next. Its description is the line after `Error: `, without
/// command-line options (s2uc and s2cs add theirs: SciStreamCommandLine's `ErrorWording`).
public enum AuthError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A scope id that cannot be one (empty, or characters that do not belong in a scope id).
    case invalidScopeID(String)
    /// A client id (of an s2cs) that cannot be a Globus client id.
    case invalidClientID(String)
    /// `GLOBUS_SDK_SERVICE_URL_AUTH` (or a base URL given in code) is not usable.
    case invalidServiceURL(String, reason: String)
    /// The auth server could not be reached, or did not answer within the timeout.
    case unreachable(url: String, reason: String)
    /// The auth server answered with an HTTP error; `oauthError` is its `error` field when it sent one.
    case httpStatus(url: String, status: Int, oauthError: String?, detail: String?)
    /// The auth server answered 2xx with a body we cannot use.
    case badResponse(url: String, reason: String)
    /// The token file or its folder cannot be used.
    case tokenFile(path: String, reason: String)
    /// No usable token for this scope is stored.
    case notLoggedIn(scope: String, path: String)
    /// The stored access token expired and the refresh failed.
    case refreshFailed(scope: String, reason: String)
    /// The authorization code was not given.
    case noAuthorizationCode
    /// OpenSSL could not produce random bytes.
    case noRandomness

    public var description: String {
        switch self {
        case .invalidScopeID(let text):
            return "'\(text)' is not a scope id: use the client id of the s2cs (letters, digits, '-', '_' and '.', as in 1a2b3c4d-...)"
        case .invalidClientID(let text):
            return "'\(text)' is not a Globus client id (letters, digits, '-', '_' and '.', as in 1a2b3c4d-...)"
        case .invalidServiceURL(let text, let reason):
            return "GLOBUS_SDK_SERVICE_URL_AUTH='\(text)' is not usable: \(reason)"
        case .unreachable(let url, let reason):
            return "cannot reach Globus Auth at \(url): \(reason)"
        case .httpStatus(let url, let status, let oauthError, let detail):
            var text = "Globus Auth at \(url) answered HTTP \(status)"
            if let oauthError { text += " (\(oauthError))" }
            if let detail, !detail.isEmpty { text += ": \(detail)" }
            return text
        case .badResponse(let url, let reason):
            return "Globus Auth at \(url) sent an answer that cannot be used: \(reason)"
        case .tokenFile(let path, let reason):
            return "token file \(path): \(reason)"
        case .notLoggedIn(let scope, let path):
            return "no token for scope '\(scope)' in \(path): log in for that scope"
        case .refreshFailed(let scope, let reason):
            return "the access token for scope '\(scope)' has expired and could not be refreshed (\(reason)); log out, then log in again for that scope"
        case .noAuthorizationCode:
            return "no authorization code was entered: open the URL above in a browser, log in, and paste the code it shows"
        case .noRandomness:
            return "OpenSSL could not produce random bytes (RAND_bytes failed) for the login's PKCE verifier"
        }
    }
}
