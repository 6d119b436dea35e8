/// A TLS failure: its `kind` for callers to switch on, which file it is about (by role) and what the
/// files held, a neutral `description` that names no command-line option (s2cs and s2uc word it
/// with their flags: SciStreamCommandLine's `ErrorWording`), and what OpenSSL said, for the logs.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// A certificate file (the server's, or the client's trust anchor) cannot be read.
        case certificateFileMissing(path: String)
        /// The private key file cannot be read.
        case keyFileMissing(path: String)
        /// The certificate file holds no usable PEM certificate.
        case badCertificate(path: String, reason: String)
        /// The key file holds no usable PEM private key (or an encrypted one).
        case badKey(path: String, reason: String)
        /// The private key is not the certificate's.
        case keyMismatch(certificatePath: String, keyPath: String)
        /// The TLS handshake failed for a reason other than the ones below.
        case handshakeFailed(reason: String)
        /// The client could not verify the server's certificate: its chain or its name/address.
        case verificationFailed(reason: String)
        /// The peer spoke something other than TLS where a TLS handshake was expected.
        case peerIsPlaintext
        /// Server side: the client started a TLS handshake where plaintext was expected.
        case peerIsTLS
        /// A deadline passed.
        case timedOut
        /// The connection is closed (by the peer, reset, or closed here).
        case closed
        /// The task was cancelled while waiting.
        case cancelled
        /// An established TLS connection failed (a bad record, an alert, a socket error).
        case connectionFailed(reason: String)
        /// OpenSSL could not set up a context or a connection object.
        case setupFailed(reason: String)
    }

    /// Which end of the connection this process was.
    public enum Side: Sendable, Equatable {
        case client, server
    }

    /// Which file a file error is about, by its role.
    public enum File: Sendable, Equatable {
        /// The server's certificate (chain).
        case certificate
        /// The server's private key.
        case privateKey
        /// The certificate a client trusts (its trust anchor).
        case trustAnchor
    }

    public var kind: Kind
    public var side: Side?
    /// The peer as `host:port`, when known.
    public var peer: String?
    /// More about what happened: the errno text of a failed read, or what timed out
    /// ("during the TLS handshake with 10.0.0.1:5000").
    public var detail: String?
    /// The file a file error is about.
    public var file: File?
    /// A certificate file that holds a private key instead (are the two files swapped?).
    public var looksLikeKey = false
    /// A private key file that holds a certificate instead (are the two files swapped?).
    public var looksLikeCertificate = false
    /// Server side: the client refused this server's certificate (an unknown-CA or bad-certificate alert).
    public var peerRejectedCertificate = false
    /// Client side: the server's certificate does not lead to the trusted one (not a date or name problem).
    public var untrustedCertificate = false
    /// The drained OpenSSL error queue, oldest first, as `ERR_error_string_n` prints each entry.
    public var openSSLErrors: [String]
    /// OpenSSL's certificate verification result (`X509_verify_cert_error_string`), where one was made.
    public var verifyResult: String?

    public init(
        _ kind: Kind, side: Side? = nil, peer: String? = nil, detail: String? = nil, file: File? = nil,
        openSSLErrors: [String] = [], verifyResult: String? = nil
    ) {
        self.kind = kind
        self.side = side
        self.peer = peer
        self.detail = detail
        self.file = file
        self.openSSLErrors = openSSLErrors
        self.verifyResult = verifyResult
    }

    public var description: String {
        let detailNote = detail.map { ": \($0)" } ?? ""
        let peerName = peer ?? "the peer"
        switch kind {
        case .certificateFileMissing(let path):
            return "cannot read certificate file '\(path)'\(detailNote)"
        case .keyFileMissing(let path):
            return "cannot read private key file '\(path)'\(detailNote)"
        case .badCertificate(let path, let reason):
            return "certificate file '\(path)' is not usable: \(reason)" + (looksLikeKey ? "; it holds a private key, not a certificate" : "")
        case .badKey(let path, let reason):
            return "private key file '\(path)' is not usable: \(reason)" + (looksLikeCertificate ? "; it holds a certificate, not a private key" : "")
        case .keyMismatch(let certificatePath, let keyPath):
            return "the private key '\(keyPath)' does not belong to the certificate '\(certificatePath)'"
        case .handshakeFailed(let reason):
            return "TLS handshake with \(peerName) failed: \(reason)" + (peerRejectedCertificate ? " (the client rejected this server's certificate)" : "")
        case .verificationFailed(let reason):
            return "cannot verify the TLS certificate of \(peerName): \(reason)" + (untrustedCertificate ? " (it does not lead to the trusted certificate)" : "")
        case .peerIsPlaintext:
            if side == .server {
                return "the client \(peerName) sent plaintext, but this server expects TLS"
            }
            return "\(peerName) answered without TLS"
        case .peerIsTLS:
            return "the client \(peerName) started a TLS handshake, but this server runs without TLS"
        case .timedOut:
            return "timed out \(detail ?? "waiting for \(peerName)")"
        case .closed:
            return "the connection with \(peerName) is closed\(detailNote)"
        case .cancelled:
            return "cancelled while talking to \(peerName)"
        case .connectionFailed(let reason):
            return "TLS connection with \(peerName) failed: \(reason)"
        case .setupFailed(let reason):
            return "cannot set up TLS: \(reason)"
        }
    }
}
