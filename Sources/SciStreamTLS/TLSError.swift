/// A TLS failure: its `kind` for callers to switch on, its `description` for the operator
/// (the line printed after `Error: `), and what OpenSSL said, for the logs.
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

    public var kind: Kind
    public var side: Side?
    /// The peer as `host:port`, when known.
    public var peer: String?
    /// More about what happened: the errno text of a failed read, or what timed out
    /// ("during the TLS handshake with 10.0.0.1:5000").
    public var detail: String?
    /// The command-line flag that named the file, for the file errors.
    public var flag: String?
    /// The drained OpenSSL error queue, oldest first, as `ERR_error_string_n` prints each entry.
    public var openSSLErrors: [String]
    /// OpenSSL's certificate verification result (`X509_verify_cert_error_string`), where one was made.
    public var verifyResult: String?

    public init(
        _ kind: Kind, side: Side? = nil, peer: String? = nil, detail: String? = nil, flag: String? = nil,
        openSSLErrors: [String] = [], verifyResult: String? = nil
    ) {
        self.kind = kind
        self.side = side
        self.peer = peer
        self.detail = detail
        self.flag = flag
        self.openSSLErrors = openSSLErrors
        self.verifyResult = verifyResult
    }

    public var description: String {
        let flagNote = flag.map { " (\($0))" } ?? ""
        let detailNote = detail.map { ": \($0)" } ?? ""
        let peerName = peer ?? "the peer"
        switch kind {
        case .certificateFileMissing(let path):
            return "cannot read certificate file '\(path)'\(flagNote)\(detailNote)"
        case .keyFileMissing(let path):
            return "cannot read private key file '\(path)'\(flagNote)\(detailNote)"
        case .badCertificate(let path, let reason):
            return "certificate file '\(path)'\(flagNote) is not usable: \(reason)"
        case .badKey(let path, let reason):
            return "private key file '\(path)'\(flagNote) is not usable: \(reason)"
        case .keyMismatch(let certificatePath, let keyPath):
            return "the private key '\(keyPath)' (--server_key) does not belong to the certificate '\(certificatePath)' (--server_crt)"
        case .handshakeFailed(let reason):
            return "TLS handshake with \(peerName) failed: \(reason)"
        case .verificationFailed(let reason):
            return "cannot verify the TLS certificate of \(peerName): \(reason)"
        case .peerIsPlaintext:
            if side == .server {
                return "the client \(peerName) sent plaintext, but this server expects TLS (was s2uc run with --ssl False?)"
            }
            return "\(peerName) answered without TLS: it looks like an s2cs started with --ssl=False; to reach it, run s2uc with --ssl False"
        case .peerIsTLS:
            return "the client \(peerName) started a TLS handshake, but this server runs without TLS (--ssl=False); run s2uc with --ssl False, or s2cs with TLS"
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
