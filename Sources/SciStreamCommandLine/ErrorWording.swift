import SciStreamWire
import SciStreamSystem
import SciStreamTLS
import SciStreamAuth

/// The one place where the errors of the lower layers (TLS, Wire, DataPlane, Auth) are worded for
/// the operators of s2cs and s2uc. Those layers say what went wrong, and about which file by its
/// role, in a description that names no command-line option; here the options that fix it are
/// added. Every place s2cs or s2uc shows an error (stderr, s2cs's log, a status s2cs sends to s2uc)
/// goes through `text(_:)` or one of the functions below.
///
/// One function per error type serves both programs: each file role and each hint belongs to one
/// program's options (the server's certificate and key to s2cs, the trust anchor to s2uc). The
/// errors of the layers only s2cs links (the data plane) word themselves through
/// `OperatorWordedError`, declared by the server module, so that s2uc links no data plane.
public enum ErrorWording {
    /// Any error as s2cs and s2uc show it: the lower layers' errors worded here, others as they
    /// describe themselves.
    public static func text(_ error: any Error) -> String {
        switch error {
        case let error as StreamError: text(error.cause)
        case let error as TLSError: tls(error)
        case let error as WireError: wire(error)
        case let error as AuthError: auth(error)
        case let error as any OperatorWordedError: error.operatorText
        default: "\(error)"
        }
    }

    /// The option that names a TLS file: s2cs's `--server_crt` and `--server_key`, s2uc's `--server_cert`.
    public static func option(_ file: TLSError.File) -> String {
        switch file {
        case .certificate: "--server_crt"
        case .privateKey: "--server_key"
        case .trustAnchor: "--server_cert"
        }
    }

    public static func tls(_ error: TLSError) -> String {
        let fileNote = error.file.map { " (\(option($0)))" } ?? ""
        let detailNote = error.detail.map { ": \($0)" } ?? ""
        let peer = error.peer ?? "the peer"
        let swapped = "are --server_crt and --server_key swapped?"
        switch error.kind {
        case .certificateFileMissing(let path):
            return "cannot read certificate file '\(path)'\(fileNote)\(detailNote)"
        case .keyFileMissing(let path):
            return "cannot read private key file '\(path)'\(fileNote)\(detailNote)"
        case .badCertificate(let path, let reason):
            let hint = !error.looksLikeKey ? ""
                : error.file == .certificate ? "; it holds a private key: \(swapped)" : "; it holds a private key, not a certificate"
            return "certificate file '\(path)'\(fileNote) is not usable: \(reason)\(hint)"
        case .badKey(let path, let reason):
            let hint = error.looksLikeCertificate ? "; it holds a certificate: \(swapped)" : ""
            return "private key file '\(path)'\(fileNote) is not usable: \(reason)\(hint)"
        case .keyMismatch(let certificatePath, let keyPath):
            return "the private key '\(keyPath)' (--server_key) does not belong to the certificate '\(certificatePath)' (--server_crt)"
        case .handshakeFailed(let reason) where error.peerRejectedCertificate:
            return "TLS handshake with \(peer) failed: \(reason) (the client rejected this server's certificate: does s2uc --server_cert name it?)"
        case .verificationFailed(let reason) where error.untrustedCertificate:
            return "cannot verify the TLS certificate of \(peer): \(reason) (is --server_cert the certificate that s2cs presents with --server_crt?)"
        case .peerIsPlaintext where error.side == .server:
            return "\(error) (was s2uc run with --ssl False?)"
        case .peerIsPlaintext:
            return "\(error): it looks like an s2cs started with --ssl=False; to reach it, run s2uc with --ssl False"
        case .peerIsTLS:
            return "\(error) (--ssl=False); run s2uc with --ssl False, or s2cs with TLS"
        default:
            return error.description
        }
    }

    public static func wire(_ error: WireError) -> String {
        switch error {
        case .frameTooLarge(let length):
            return "a control frame announced \(length) bytes, more than the frame size limit: "
                + "the peer does not speak the SciStream control protocol "
                + "(is TLS on at one end only? use the same --ssl setting for s2uc and s2cs)"
        default:
            return error.description
        }
    }

    public static func auth(_ error: AuthError) -> String {
        switch error {
        case .invalidScopeID(let text):
            return "'\(text)' is not a scope id: use the client id of the s2cs (letters, digits, '-', '_' and '.', as in 's2uc login --scope 1a2b3c4d-...')"
        case .invalidClientID:
            return "--client-id \(error)"
        case .notLoggedIn(let scope, let path):
            return "no token for scope '\(scope)' in \(path): log in with 's2uc login --scope \(scope)'"
        case .refreshFailed(let scope, let reason):
            return "the access token for scope '\(scope)' has expired and could not be refreshed (\(reason)); log in again with 's2uc logout' then 's2uc login --scope \(scope)'"
        default:
            return error.description
        }
    }
}

/// An error of a layer this module does not link, worded for operators by the module that does.
public protocol OperatorWordedError: Error {
    var operatorText: String { get }
}
