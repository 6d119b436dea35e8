#if canImport(Glibc)
import Glibc
#endif
import COpenSSL
import Synchronization
import SciStreamSystem

/// One OpenSSL connection (`SSL`) over a non-blocking socket.
///
/// OpenSSL never touches the socket: it reads the peer's bytes from one memory BIO and writes its
/// own into another. After each OpenSSL call the output is sent with the socket's `writeAll`
/// (MSG_NOSIGNAL: no SIGPIPE); when OpenSSL wants more input, the task awaits the reactor and
/// reads the socket. So no thread ever blocks, and this layer sees every byte the peer sends.
///
/// The `SSL` and its BIOs live behind `state` (a Mutex), taken only around synchronous OpenSSL
/// calls and never across an await: `shutdown()` from another task cannot race a call in progress.
final class TLSConnection: Sendable {
    private struct State {
        var ssl: OpaquePointer?  // nil once freed
        var incoming: OpaquePointer?  // memory BIO: the peer's bytes, for OpenSSL to read
        var outgoing: OpaquePointer?  // memory BIO: OpenSSL's bytes, for the socket
        var firstPeerByte: UInt8?
        var peerClosed = false
    }

    /// What one OpenSSL call did.
    struct Step: Sendable {
        var result: Int32
        var code: Int32  // SSL_get_error
        var output: [UInt8]
        var errors: [OpenSSLError]
        var verifyResult: Int
    }

    enum Outcome {
        case done(Int32)
        case peerClosed
        case failed(Step)
    }

    enum Phase {
        case handshake, reading, writing

        func timeoutDetail(peer: String) -> String {
            switch self {
            case .handshake: "during the TLS handshake with \(peer)"
            case .reading: "waiting for data from \(peer)"
            case .writing: "sending data to \(peer)"
            }
        }
    }

    /// The most bytes read from the socket at once: a little more than one TLS record.
    private static let readSize = 17 * 1024

    private let state: Mutex<State>
    let socket: Socket
    let context: TLSContext
    let peer: String
    var side: TLSError.Side { context.side }

    init(context: TLSContext, socket: Socket, peer: String) throws(TLSError) {
        self.socket = socket
        self.context = context
        self.peer = peer
        OpenSSLErrorQueue.clear()
        guard let ssl = SSL_new(context.context) else {
            throw TLSError(.setupFailed(reason: "SSL_new failed: \(OpenSSLErrorQueue.drain().reasons)"),
                           side: context.side, peer: peer)
        }
        let madeIncoming = BIO_new(BIO_s_mem())
        let madeOutgoing = BIO_new(BIO_s_mem())
        guard let incoming = madeIncoming, let outgoing = madeOutgoing else {
            let reasons = OpenSSLErrorQueue.drain().reasons
            if let madeIncoming { BIO_free(madeIncoming) }
            if let madeOutgoing { BIO_free(madeOutgoing) }
            SSL_free(ssl)
            throw TLSError(.setupFailed(reason: "BIO_new failed: \(reasons)"), side: context.side, peer: peer)
        }
        // An empty input BIO means "not yet" (retry), not end of file: EOF is handled here.
        _ = scistream_BIO_set_mem_eof_return(incoming, -1)
        SSL_set_bio(ssl, incoming, outgoing)  // the SSL owns both BIOs from here on
        if context.side == .server {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
        }
        OpenSSLErrorQueue.clear()
        state = Mutex(State(ssl: ssl, incoming: incoming, outgoing: outgoing))
    }

    deinit {
        free()
    }

    // MARK: - Setup

    /// Client side: the name or address the server's certificate must carry. An IP literal (v4 or
    /// v6, bracketed or not) is matched against IP SANs; a host name against DNS SANs (and is sent
    /// as SNI).
    func expect(serverName: String) throws(TLSError) {
        let failure: String? = state.withLock { state -> String? in
            guard let ssl = state.ssl else { return "the connection is closed" }
            OpenSSLErrorQueue.clear()
            defer { OpenSSLErrorQueue.clear() }
            guard let parameters = SSL_get0_param(ssl) else { return "no verification parameters" }
            if let address = ServerName.ipLiteral(serverName) {
                guard X509_VERIFY_PARAM_set1_ip_asc(parameters, address) == 1 else {
                    return "'\(serverName)' is not a usable IP address"
                }
            } else {
                guard !serverName.isEmpty, X509_VERIFY_PARAM_set1_host(parameters, serverName, 0) == 1 else {
                    return "'\(serverName)' is not a usable host name"
                }
                X509_VERIFY_PARAM_set_hostflags(parameters, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                guard scistream_SSL_set_tlsext_host_name(ssl, serverName) == 1 else {
                    return "'\(serverName)' cannot be sent as a TLS server name"
                }
            }
            return nil
        }
        if let failure {
            throw TLSError(.setupFailed(reason: failure), side: side, peer: peer)
        }
    }

    // MARK: - Driving OpenSSL

    /// Runs one OpenSSL call under the lock, with the error queue cleared before and drained after.
    private func step(_ operation: (OpaquePointer) -> Int32) -> Step? {
        state.withLock { state -> Step? in
            guard let ssl = state.ssl, let outgoing = state.outgoing else { return nil }
            OpenSSLErrorQueue.clear()
            let result = operation(ssl)
            let code = result > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, result)
            let errors = OpenSSLErrorQueue.drain()
            let verifyResult = SSL_get_verify_result(ssl)
            return Step(result: result, code: code, output: Self.takeOutput(outgoing), errors: errors,
                        verifyResult: verifyResult)
        }
    }

    /// Everything OpenSSL has written to the outgoing memory BIO.
    private static func takeOutput(_ bio: OpaquePointer) -> [UInt8] {
        let pending = Int(BIO_ctrl_pending(bio))
        guard pending > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: pending)
        let count = bytes.withUnsafeMutableBytes { BIO_read(bio, $0.baseAddress, Int32(clamping: $0.count)) }
        guard count > 0 else { return [] }
        return Array(bytes.prefix(Int(count)))
    }

    /// Runs `operation` until it completes, sending OpenSSL's output and feeding it the peer's
    /// bytes as it asks for them. Socket failures (deadline, reset, cancellation) are thrown.
    func perform(
        deadline: ContinuousClock.Instant?, phase: Phase, _ operation: (OpaquePointer) -> Int32
    ) async throws(TLSError) -> Outcome {
        while true {
            guard let step = step(operation) else {
                throw TLSError(.closed, side: side, peer: peer, detail: "closed by this side")
            }
            if !step.output.isEmpty {
                try await send(step.output, deadline: deadline, phase: phase)
            }
            switch step.code {
            case SSL_ERROR_NONE:
                return .done(step.result)
            case SSL_ERROR_ZERO_RETURN:  // close_notify
                markPeerClosed()
                return .peerClosed
            case SSL_ERROR_WANT_READ:
                if try await !receive(deadline: deadline, phase: phase) {
                    markPeerClosed()
                    return .peerClosed
                }
            case SSL_ERROR_WANT_WRITE where !step.output.isEmpty:
                continue  // sent: try again
            default:
                return .failed(step)
            }
        }
    }

    private func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant?, phase: Phase) async throws(TLSError) {
        do {
            try await socket.writeAll(bytes, deadline: deadline)
        } catch {
            throw socketError(error, phase: phase)
        }
    }

    /// Reads what the peer sent into the incoming BIO; false at end of file.
    private func receive(deadline: ContinuousClock.Instant?, phase: Phase) async throws(TLSError) -> Bool {
        let bytes: [UInt8]
        do {
            bytes = try await socket.read(max: Self.readSize, deadline: deadline)
        } catch {
            throw socketError(error, phase: phase)
        }
        guard let first = bytes.first else { return false }
        let fed = state.withLock { state -> Bool in
            guard let incoming = state.incoming, state.ssl != nil else { return false }
            if state.firstPeerByte == nil { state.firstPeerByte = first }
            OpenSSLErrorQueue.clear()
            let written = bytes.withUnsafeBytes { BIO_write(incoming, $0.baseAddress, Int32(clamping: $0.count)) }
            OpenSSLErrorQueue.clear()
            return written == Int32(clamping: bytes.count)
        }
        guard fed else {
            throw TLSError(.connectionFailed(reason: "cannot buffer the peer's bytes"), side: side, peer: peer)
        }
        return true
    }

    private func markPeerClosed() {
        state.withLock { $0.peerClosed = true }
    }

    var isPeerClosed: Bool { state.withLock { $0.peerClosed } }

    /// A socket-level failure as a TLS error.
    func socketError(_ error: StreamError, phase: Phase) -> TLSError {
        switch error.kind {
        case .timedOut:
            return TLSError(.timedOut, side: side, peer: peer, detail: phase.timeoutDetail(peer: peer))
        case .closed:
            let byThisSide = (error.cause as? Errno) == .badFileDescriptor
            return TLSError(.closed, side: side, peer: peer, detail: byThisSide ? "closed by this side" : error.description)
        case .cancelled:
            return TLSError(.cancelled, side: side, peer: peer)
        case .failed:
            return TLSError(.connectionFailed(reason: error.description), side: side, peer: peer)
        }
    }

    // MARK: - Handshake

    /// Runs the handshake to its end, or throws a classified error.
    func handshake(deadline: ContinuousClock.Instant?, expectedName: String?) async throws(TLSError) {
        let outcome: Outcome
        do {
            outcome = try await perform(deadline: deadline, phase: .handshake) { SSL_do_handshake($0) }
        } catch {
            switch error.kind {
            case .closed:
                throw handshakeError(step: nil, expectedName: expectedName, closedDetail: error.detail)
            default:
                throw error
            }
        }
        switch outcome {
        case .done:
            return
        case .peerClosed:
            throw handshakeError(step: nil, expectedName: expectedName, closedDetail: nil)
        case .failed(let step):
            throw handshakeError(step: step, expectedName: expectedName, closedDetail: nil)
        }
    }

    /// Why a handshake failed: the peer is not speaking TLS, the certificate did not verify, or what OpenSSL said.
    private func handshakeError(step: Step?, expectedName: String?, closedDetail: String?) -> TLSError {
        let errors = step?.errors ?? []
        let firstByte = state.withLock { $0.firstPeerByte }
        // TLS records start with a content type 20...24; plaintext frames start with 0x00.
        if let firstByte, !(0x14...0x18).contains(firstByte) {
            return TLSError(.peerIsPlaintext, side: side, peer: peer, openSSLErrors: errors.lines)
        }
        let plaintextReasons = [SSL_R_WRONG_VERSION_NUMBER, SSL_R_PACKET_LENGTH_TOO_LONG, SSL_R_HTTP_REQUEST,
                                SSL_R_HTTPS_PROXY_REQUEST]
        if errors.contains(where: { $0.library == ERR_LIB_SSL && plaintextReasons.contains($0.reasonCode) }) {
            return TLSError(.peerIsPlaintext, side: side, peer: peer, openSSLErrors: errors.lines)
        }
        if side == .client, let step, step.verifyResult != Int(X509_V_OK) {
            let verifyText = String(cString: X509_verify_cert_error_string(step.verifyResult))
            var error = TLSError(.verificationFailed(reason: verificationReason(step.verifyResult, text: verifyText,
                                                                                expectedName: expectedName)),
                                 side: side, peer: peer, openSSLErrors: errors.lines, verifyResult: verifyText)
            error.untrustedCertificate = !Self.nameOrDateResults.contains(Int32(clamping: step.verifyResult))
            return error
        }
        let reason: String
        var peerRejectedCertificate = false
        if !errors.isEmpty {
            reason = errors.reasons
            let rejected = [SSL_R_TLSV1_ALERT_UNKNOWN_CA, SSL_R_SSLV3_ALERT_BAD_CERTIFICATE,
                            SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN]
            peerRejectedCertificate = side == .server
                && errors.contains(where: { $0.library == ERR_LIB_SSL && rejected.contains($0.reasonCode) })
        } else if let step {
            reason = "OpenSSL error \(step.code)"
        } else {
            let who = side == .client ? "the server" : "the client"
            reason = "\(who) closed the connection" + (closedDetail.map { " (\($0))" } ?? "")
        }
        var error = TLSError(.handshakeFailed(reason: reason), side: side, peer: peer, openSSLErrors: errors.lines)
        error.peerRejectedCertificate = peerRejectedCertificate
        return error
    }

    /// Verification results about the certificate's name or dates, not about whom it leads to.
    private static let nameOrDateResults = [X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH,
                                            X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID]

    private func verificationReason(_ code: Int, text: String, expectedName: String?) -> String {
        switch Int32(clamping: code) {
        case X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH:
            let expected = expectedName ?? "the expected name"
            let names = peerCertificateNames()
            if names.isEmpty {
                return "certificate does not name \(expected) (\(text))"
            }
            return "certificate is for \(names.joined(separator: ", ")), not \(expected) (\(text))"
        default:
            return text
        }
    }

    /// The names in the peer's leaf certificate: its subjectAltName entries, else its CN.
    private func peerCertificateNames() -> [String] {
        state.withLock { state -> [String] in
            guard let ssl = state.ssl else { return [] }
            OpenSSLErrorQueue.clear()
            defer { OpenSSLErrorQueue.clear() }
            // After a failed verification OpenSSL keeps the chain it received, but not the peer.
            var leaf = SSL_get0_peer_certificate(ssl)
            if leaf == nil, let chain = SSL_get_peer_cert_chain(ssl), scistream_sk_X509_num(chain) > 0 {
                leaf = scistream_sk_X509_value(chain, 0)
            }
            guard let leaf else { return [] }
            return CertificateNames.names(of: leaf)
        }
    }

    // MARK: - Teardown

    /// Best-effort close_notify (sent without waiting), then frees the SSL. Idempotent.
    func shutdown() {
        let output = state.withLock { state -> [UInt8] in
            guard let ssl = state.ssl, let outgoing = state.outgoing else { return [] }
            OpenSSLErrorQueue.clear()
            var output: [UInt8] = []
            if SSL_is_init_finished(ssl) == 1 {
                _ = SSL_shutdown(ssl)
                output = Self.takeOutput(outgoing)
            }
            OpenSSLErrorQueue.clear()
            SSL_free(ssl)
            state.ssl = nil
            state.incoming = nil
            state.outgoing = nil
            return output
        }
        let fd = socket.fd
        if !output.isEmpty, fd >= 0 {
            // One non-blocking try: a peer that is not reading does not get to hold up the close.
            _ = output.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
        }
    }

    /// Frees the SSL without a word to the peer (a failed handshake). Leaves the socket open.
    func free() {
        state.withLock { state in
            guard let ssl = state.ssl else { return }
            OpenSSLErrorQueue.clear()
            SSL_free(ssl)
            OpenSSLErrorQueue.clear()
            state.ssl = nil
            state.incoming = nil
            state.outgoing = nil
        }
    }

    /// The negotiated protocol ("TLSv1.3"), or nil once closed.
    var protocolVersion: String? {
        state.withLock { state -> String? in
            guard let ssl = state.ssl, let version = SSL_get_version(ssl) else { return nil }
            return String(cString: version)
        }
    }

    /// The protocol agreed by ALPN ("h2"), or nil when none was (or once closed).
    var alpnProtocol: String? {
        state.withLock { state -> String? in
            guard let ssl = state.ssl else { return nil }
            var data: UnsafePointer<UInt8>? = nil
            var length: UInt32 = 0
            SSL_get0_alpn_selected(ssl, &data, &length)
            guard let data, length > 0 else { return nil }
            return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
        }
    }
}
