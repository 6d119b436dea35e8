import Foundation

/// What SciStream needs to know about Globus Auth: where it is, which scope an s2cs requires, which
/// native-app client s2uc logs in as.
public enum GlobusAuth {
    /// Globus Auth in production.
    public static let defaultServiceURL = "https://auth.globus.org"
    /// The environment variable the Globus Python SDK honours to point at another Globus Auth.
    public static let serviceURLVariable = "GLOBUS_SDK_SERVICE_URL_AUTH"
    /// SciStream's registered Globus native app (public: native apps have no secret), as the original s2uc uses.
    public static let nativeClientID = "4787c84e-9c55-4881-b941-cb6720cea11c"
    /// The access token sent when there is none, as the original does.
    public static let noToken = "INVALID_TOKEN"

    /// The base URL of Globus Auth: `$GLOBUS_SDK_SERVICE_URL_AUTH` if set, else `https://auth.globus.org`.
    /// Without a trailing slash. Plain `http` is accepted only towards a loopback host (a local test
    /// server): anywhere else, tokens and the client secret would cross the network in clear.
    public static func serviceURL(environment: [String: String]) throws(AuthError) -> URL {
        guard let text = environment[serviceURLVariable], !text.isEmpty else {
            return URL(string: defaultServiceURL)!  // safe: a constant, valid URL
        }
        return try validateServiceURL(text)
    }

    static func validateServiceURL(_ text: String) throws(AuthError) -> URL {
        var trimmed = text
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let components = URLComponents(string: trimmed), let scheme = components.scheme?.lowercased(),
              let host = components.host, !host.isEmpty, let url = components.url else {
            throw .invalidServiceURL(text, reason: "not an absolute URL such as https://auth.globus.org")
        }
        guard components.query == nil, components.fragment == nil, components.user == nil, components.password == nil else {
            throw .invalidServiceURL(text, reason: "give the base URL only, without user, query or fragment")
        }
        switch scheme {
        case "https":
            return url
        case "http":
            guard isLoopback(host) else {
                throw .invalidServiceURL(text, reason: "plain http is allowed only to a loopback address (a local test server); use https")
            }
            return url
        default:
            throw .invalidServiceURL(text, reason: "the scheme must be https")
        }
    }

    static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare == "localhost" || bare == "::1" { return true }
        let parts = bare.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// Checks a scope id (the s2cs's Globus client id, e.g. a UUID, or "abc" in the tutorial).
    public static func validateScopeID(_ text: String) throws(AuthError) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        guard !text.isEmpty, text.count <= 128, text.allSatisfy({ allowed.contains($0) }),
              text != ".", text != ".." else {
            throw .invalidScopeID(text)
        }
        return text
    }

    /// The scope an s2cs with client id `clientID` requires: `https://auth.globus.org/scopes/<id>/scistream`.
    /// A scope string is a name, not an address: it does not follow `GLOBUS_SDK_SERVICE_URL_AUTH`.
    public static func scistreamScope(_ clientID: String) -> String {
        "https://auth.globus.org/scopes/\(clientID)/scistream"
    }

    /// Where Globus shows the authorization code to paste back (the native-app default).
    public static func redirectURI(_ base: URL) -> String {
        base.absoluteString + "/v2/web/auth-code"
    }
}
