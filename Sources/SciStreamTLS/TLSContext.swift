#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import SciStreamSystem

/// An OpenSSL `SSL_CTX`: the server's certificate and key, or the client's trust anchor.
///
/// Sendable because an `SSL_CTX` is safe to share between threads once it is set up: it is
/// configured completely inside `server(...)`/`client(...)` and never changed afterwards, and
/// OpenSSL guards its shared internals (reference counts, session cache) with its own locks.
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer
    /// Which end of a connection this context is for.
    public let side: TLSError.Side

    private init(context: OpaquePointer, side: TLSError.Side) {
        self.context = context
        self.side = side
    }

    deinit {
        SSL_CTX_free(context)
    }

    /// A server context presenting the PEM certificate (chain) at `certificatePath` with the PEM
    /// private key at `keyPath` (s2cs's `--server_crt` and `--server_key`). TLS 1.2 at least, AEAD
    /// ciphers only (`tls12Ciphers`).
    public static func server(certificatePath: String, keyPath: String) throws(TLSError) -> TLSContext {
        let certificateBytes = try readFile(certificatePath, file: .certificate) { .certificateFileMissing(path: $0) }
        let keyBytes = try readFile(keyPath, file: .privateKey) { .keyFileMissing(path: $0) }

        let certificates = try parseCertificates(certificateBytes, path: certificatePath, file: .certificate)
        defer { certificates.forEach { X509_free($0) } }
        let key = try parsePrivateKey(keyBytes, path: keyPath)
        defer { EVP_PKEY_free(key) }
        let leaf = certificates[0]  // parseCertificates returns at least one

        OpenSSLErrorQueue.clear()
        guard X509_check_private_key(leaf, key) == 1 else {
            throw TLSError(.keyMismatch(certificatePath: certificatePath, keyPath: keyPath),
                           side: .server, openSSLErrors: OpenSSLErrorQueue.drain().lines)
        }

        let tls = try make(method: TLS_server_method(), side: .server)
        OpenSSLErrorQueue.clear()
        guard SSL_CTX_use_certificate(tls.context, leaf) == 1 else {
            let errors = OpenSSLErrorQueue.drain()
            throw TLSError(.badCertificate(path: certificatePath, reason: errors.reasons), side: .server,
                           file: .certificate, openSSLErrors: errors.lines)
        }
        for intermediate in certificates.dropFirst() {
            X509_up_ref(intermediate)  // add0 takes a reference; the defer above drops ours
            guard scistream_SSL_CTX_add0_chain_cert(tls.context, intermediate) == 1 else {
                X509_free(intermediate)
                let errors = OpenSSLErrorQueue.drain()
                throw TLSError(.badCertificate(path: certificatePath, reason: "cannot use its chain: \(errors.reasons)"),
                               side: .server, file: .certificate, openSSLErrors: errors.lines)
            }
        }
        guard SSL_CTX_use_PrivateKey(tls.context, key) == 1, SSL_CTX_check_private_key(tls.context) == 1 else {
            let errors = OpenSSLErrorQueue.drain()
            throw TLSError(.keyMismatch(certificatePath: certificatePath, keyPath: keyPath), side: .server,
                           openSSLErrors: errors.lines)
        }
        // No session resumption: a control connection carries one request or a few.
        // No server-side session cache either: it would keep a session object per connection.
        _ = SSL_CTX_set_num_tickets(tls.context, 0)
        _ = scistream_SSL_CTX_set_session_cache_off(tls.context)
        return tls
    }

    /// A client context that trusts only the PEM certificate(s) at `trustAnchorPath` (s2uc's
    /// `--server_cert`) and verifies the server. TLS 1.2 at least. The given certificate is a trust
    /// anchor even when it is not self-signed (X509_V_FLAG_PARTIAL_CHAIN): the operator pinned it.
    public static func client(trustAnchorPath: String) throws(TLSError) -> TLSContext {
        let bytes = try readFile(trustAnchorPath, file: .trustAnchor) { .certificateFileMissing(path: $0) }
        let certificates = try parseCertificates(bytes, path: trustAnchorPath, file: .trustAnchor)
        defer { certificates.forEach { X509_free($0) } }

        let tls = try make(method: TLS_client_method(), side: .client)
        OpenSSLErrorQueue.clear()
        guard let store = SSL_CTX_get_cert_store(tls.context) else {
            throw TLSError(.setupFailed(reason: "no certificate store"), side: .client,
                           openSSLErrors: OpenSSLErrorQueue.drain().lines)
        }
        for certificate in certificates {
            guard X509_STORE_add_cert(store, certificate) == 1 else {
                let errors = OpenSSLErrorQueue.drain()
                throw TLSError(.badCertificate(path: trustAnchorPath, reason: errors.reasons), side: .client,
                               file: .trustAnchor, openSSLErrors: errors.lines)
            }
        }
        if let parameters = SSL_CTX_get0_param(tls.context) {
            _ = X509_VERIFY_PARAM_set_flags(parameters, UInt(X509_V_FLAG_PARTIAL_CHAIN))
        }
        SSL_CTX_set_verify(tls.context, SSL_VERIFY_PEER, nil)
        OpenSSLErrorQueue.clear()
        return tls
    }

    /// The TLS 1.2 cipher suites both sides allow: ECDHE with AES-GCM or ChaCha20-Poly1305 (AEAD),
    /// for ECDSA and RSA certificates.
    public static let tls12Ciphers = [
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    ].joined(separator: ":")

    /// When the context's own certificate stops being valid (its notAfter), as seconds since the
    /// epoch; nil without a certificate.
    public var certificateNotAfter: Double? {
        guard let certificate = SSL_CTX_get0_certificate(context), let notAfter = X509_get0_notAfter(certificate) else { return nil }
        var time = tm()
        guard ASN1_TIME_to_tm(notAfter, &time) == 1 else { return nil }
        return Double(timegm(&time))
    }

    /// A new SSL_CTX with the settings both sides share.
    private static func make(method: OpaquePointer?, side: TLSError.Side) throws(TLSError) -> TLSContext {
        OpenSSLErrorQueue.clear()
        guard let method, let context = SSL_CTX_new(method) else {
            throw TLSError(.setupFailed(reason: "SSL_CTX_new failed: \(OpenSSLErrorQueue.drain().reasons)"), side: side)
        }
        let tls = TLSContext(context: context, side: side)
        guard scistream_SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) == 1 else {
            throw TLSError(.setupFailed(reason: "cannot require TLS 1.2: \(OpenSSLErrorQueue.drain().reasons)"), side: side)
        }
        // TLS 1.2: only ECDHE key exchange (forward secrecy) with an AEAD cipher; no CBC, no RC4, no
        // static RSA. TLS 1.3's suites are all AEAD, and OpenSSL's default list of them stays.
        guard SSL_CTX_set_cipher_list(context, tls12Ciphers) == 1 else {
            throw TLSError(.setupFailed(reason: "cannot set the TLS 1.2 ciphers: \(OpenSSLErrorQueue.drain().reasons)"), side: side)
        }
        // SSL_write may be retried with the same bytes at another address (Swift arrays move).
        // RELEASE_BUFFERS: an idle connection gives back its 2 x ~17 KiB record buffers; a server holds
        // thousands of idle control connections (requests waiting for their hello).
        _ = scistream_SSL_CTX_set_mode(context, Int(SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) | Int(SSL_MODE_RELEASE_BUFFERS))
        _ = SSL_CTX_set_options(context, scistream_SSL_OP_NO_RENEGOTIATION())
        OpenSSLErrorQueue.clear()
        return tls
    }

    // MARK: - Files

    /// The biggest certificate or key file read: a PEM chain is a few kilobytes.
    private static let maximumFileSize = 1 << 20

    /// Reads a whole file, with an error naming the path and the file's role.
    private static func readFile(
        _ path: String, file role: TLSError.File, missing: (String) -> TLSError.Kind
    ) throws(TLSError) -> [UInt8] {
        func failure(_ detail: String) -> TLSError {
            TLSError(missing(path), detail: detail, file: role)
        }
        let file: FileDescriptor
        do { file = try FileDescriptor.open(path, O_RDONLY) } catch { throw failure(error.description) }
        let status: stat
        do { status = try file.status() } catch { throw failure(error.description) }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw failure("not a regular file") }
        do {
            return try file.readAll(limit: maximumFileSize)
        } catch {
            throw failure(error == Errno(EFBIG) ? "bigger than 1 MiB: not a PEM file" : error.description)
        }
    }

    /// Every PEM certificate in `bytes`, at least one. The caller frees them.
    static func parseCertificates(_ bytes: [UInt8], path: String, file: TLSError.File) throws(TLSError) -> [OpaquePointer] {
        var certificates: [OpaquePointer] = []
        let failure: [OpenSSLError] = bytes.withUnsafeBytes { raw in
            OpenSSLErrorQueue.clear()
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return OpenSSLErrorQueue.drain() }
            defer { BIO_free(bio) }
            while true {
                guard let certificate = PEM_read_bio_X509(bio, nil, { _, _, _, _ in 0 }, nil) else {
                    let errors = OpenSSLErrorQueue.drain()
                    // The normal end: no further "-----BEGIN" after at least one certificate.
                    let atEnd = errors.last?.is(library: ERR_LIB_PEM, reason: PEM_R_NO_START_LINE) ?? true
                    return atEnd && !certificates.isEmpty ? [] : errors
                }
                certificates.append(certificate)
            }
        }
        if certificates.isEmpty || !failure.isEmpty {
            certificates.forEach { X509_free($0) }
            let noPEM = failure.last?.is(library: ERR_LIB_PEM, reason: PEM_R_NO_START_LINE) ?? true
            let reason = noPEM ? "no PEM certificate in it (expected a -----BEGIN CERTIFICATE----- block)" : failure.reasons
            var error = TLSError(.badCertificate(path: path, reason: reason), file: file, openSSLErrors: failure.lines)
            error.looksLikeKey = noPEM && String(decoding: bytes, as: UTF8.self).contains("PRIVATE KEY-----")
            throw error
        }
        return certificates
    }

    /// The PEM private key in `bytes`. The caller frees it.
    private static func parsePrivateKey(_ bytes: [UInt8], path: String) throws(TLSError) -> OpaquePointer {
        let result: (OpaquePointer?, [OpenSSLError]) = bytes.withUnsafeBytes { raw in
            OpenSSLErrorQueue.clear()
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { return (nil, OpenSSLErrorQueue.drain()) }
            defer { BIO_free(bio) }
            // A password callback that never gives one: an encrypted key fails instead of
            // prompting on the terminal (which would block the daemon).
            let key = PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
            return (key, OpenSSLErrorQueue.drain())
        }
        if let key = result.0 { return key }
        let errors = result.1
        let text = String(decoding: bytes, as: UTF8.self)
        let reason: String
        var looksLikeCertificate = false
        if text.contains("ENCRYPTED") {
            reason = "the key is protected by a passphrase; give an unencrypted key (openssl pkey -in KEY -out PLAIN_KEY)"
        } else if !text.contains("PRIVATE KEY-----") {
            reason = "no PEM private key in it (expected a -----BEGIN PRIVATE KEY----- block)"
            looksLikeCertificate = text.contains("-----BEGIN CERTIFICATE-----")
        } else {
            reason = errors.reasons
        }
        var error = TLSError(.badKey(path: path, reason: reason), side: .server, file: .privateKey, openSSLErrors: errors.lines)
        error.looksLikeCertificate = looksLikeCertificate
        throw error
    }
}
