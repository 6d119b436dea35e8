import SciStreamWire
import COpenSSL
import SciStreamTLS

/// Per-session key material for the hop between the gateways, derived from the session uid so
/// that both gateways hold the same key and the byte-identical self-signed certificate, which
/// each side presents and requires of its peer (mutual TLS without a CA and without a PSK, which
/// HAProxy and nginx lack).
///
/// Derivation: IKM = the 16 bytes of the UUID; HKDF-SHA256 with a fixed salt gives a 32-byte
/// Ed25519 seed (info "scistream s2ds ed25519 v1") and a 16-byte serial (info "scistream s2ds
/// serial v1"). Everything else in the certificate is fixed: version 3, validity 2025-01-01 to
/// 2099-12-31, subject = issuer = CN=scistream-s2ds, SAN DNS:scistream-s2ds, CA:TRUE (it is its
/// own trust anchor), keyUsage digitalSignature+keyCertSign, extendedKeyUsage serverAuth+clientAuth,
/// a subject key identifier (a hash of the key). Ed25519 signatures are deterministic, so the DER
/// is the same on both gateways. The uid itself is neither the key nor in the certificate.
public struct SessionKeys: Sendable, Equatable {
    /// The name both proxies check in the peer's certificate (SAN), and the certificate's CN.
    public static let peerName = "scistream-s2ds"

    static let salt = Array("scistream s2ds hkdf salt v1".utf8)
    static let seedInfo = Array("scistream s2ds ed25519 v1".utf8)
    static let serialInfo = Array("scistream s2ds serial v1".utf8)
    static let notBefore = "20250101000000Z"
    static let notAfter = "20991231235959Z"

    /// The certificate, PEM ("-----BEGIN CERTIFICATE-----").
    public let certificatePEM: String
    /// The certificate, DER.
    public let certificateDER: [UInt8]
    /// The private key, PEM PKCS#8 ("-----BEGIN PRIVATE KEY-----").
    public let privateKeyPEM: String

    /// Derives the key material of `session`. The calling thread's OpenSSL error queue is cleared
    /// first, so that an error reported below is one of this derivation's, not a leftover.
    public static func derive(_ session: SessionID) throws(DataPlaneError) -> SessionKeys {
        OpenSSLErrorQueue.clear()
        let seed = try hkdf(session.bytes, info: seedInfo, count: 32)
        var serial = try hkdf(session.bytes, info: serialInfo, count: 16)
        serial[0] = (serial[0] & 0x7f) | 0x40  // positive, non-zero, always 16 octets in DER

        guard let key = seed.withUnsafeBufferPointer({
            EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, $0.baseAddress, $0.count)
        }) else { throw .keyMaterial(reason: "EVP_PKEY_new_raw_private_key: \(openSSLErrors())") }
        defer { EVP_PKEY_free(key) }

        guard let certificate = X509_new() else { throw .keyMaterial(reason: "X509_new failed") }
        defer { X509_free(certificate) }
        try check(X509_set_version(certificate, 2), "X509_set_version")  // 2 = v3

        guard let serialNumber = serial.withUnsafeBufferPointer({ BN_bin2bn($0.baseAddress, Int32($0.count), nil) })
        else { throw .keyMaterial(reason: "BN_bin2bn failed") }
        defer { BN_free(serialNumber) }
        guard let serialInteger = BN_to_ASN1_INTEGER(serialNumber, nil) else { throw .keyMaterial(reason: "BN_to_ASN1_INTEGER failed") }
        defer { ASN1_INTEGER_free(serialInteger) }
        try check(X509_set_serialNumber(certificate, serialInteger), "X509_set_serialNumber")

        // UTCTime before 2050, GeneralizedTime after (RFC 5280), as ASN1_TIME_set_string_X509 picks.
        try check(ASN1_TIME_set_string_X509(X509_getm_notBefore(certificate), notBefore), "notBefore")
        try check(ASN1_TIME_set_string_X509(X509_getm_notAfter(certificate), notAfter), "notAfter")

        guard let name = X509_NAME_new() else { throw .keyMaterial(reason: "X509_NAME_new failed") }
        defer { X509_NAME_free(name) }
        try check(X509_NAME_add_entry_by_txt(name, "CN", scistream_MBSTRING_ASC(), peerName, -1, -1, 0), "subject CN")
        try check(X509_set_subject_name(certificate, name), "X509_set_subject_name")
        try check(X509_set_issuer_name(certificate, name), "X509_set_issuer_name")
        try check(X509_set_pubkey(certificate, key), "X509_set_pubkey")

        var context = X509V3_CTX()
        scistream_X509V3_set_ctx_nodb(&context)
        X509V3_set_ctx(&context, certificate, certificate, nil, nil, 0)
        let extensions: [(Int32, String)] = [
            (NID_basic_constraints, "critical,CA:TRUE"),
            (NID_key_usage, "critical,digitalSignature,keyCertSign"),
            (NID_ext_key_usage, "serverAuth,clientAuth"),
            (NID_subject_alt_name, "DNS:\(peerName)"),
            (NID_subject_key_identifier, "hash"),
        ]
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &context, nid, value) else {
                throw .keyMaterial(reason: "extension \(value): \(openSSLErrors())")
            }
            defer { X509_EXTENSION_free(ext) }
            try check(X509_add_ext(certificate, ext, -1), "X509_add_ext")
        }

        // Ed25519 takes no separate digest: NULL.
        guard X509_sign(certificate, key, nil) > 0 else { throw .keyMaterial(reason: "X509_sign: \(openSSLErrors())") }

        var derPointer: UnsafeMutablePointer<UInt8>? = nil
        let derLength = i2d_X509(certificate, &derPointer)
        guard derLength > 0, let derPointer else { throw .keyMaterial(reason: "i2d_X509 failed") }
        let der = Array(UnsafeBufferPointer(start: derPointer, count: Int(derLength)))
        CRYPTO_free(derPointer, #fileID, #line)

        let certificatePEM = try pem { PEM_write_bio_X509($0, certificate) }
        let privateKeyPEM = try pem { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) }
        return SessionKeys(certificatePEM: certificatePEM, certificateDER: der, privateKeyPEM: privateKeyPEM)
    }

    static func hkdf(_ ikm: [UInt8], info: [UInt8], count: Int) throws(DataPlaneError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let ok = out.withUnsafeMutableBufferPointer { outBuffer in
            ikm.withUnsafeBufferPointer { ikmBuffer in
                salt.withUnsafeBufferPointer { saltBuffer in
                    info.withUnsafeBufferPointer { infoBuffer in
                        scistream_hkdf_sha256(ikmBuffer.baseAddress, ikmBuffer.count, saltBuffer.baseAddress, saltBuffer.count,
                                              infoBuffer.baseAddress, infoBuffer.count, outBuffer.baseAddress, outBuffer.count)
                    }
                }
            }
        }
        guard ok == 1 else { throw .keyMaterial(reason: "HKDF-SHA256: \(openSSLErrors())") }
        return out
    }

    private static func check(_ result: Int32, _ what: String) throws(DataPlaneError) {
        if result != 1 { throw .keyMaterial(reason: "\(what): \(openSSLErrors())") }
    }

    private static func pem(_ write: (OpaquePointer) -> Int32) throws(DataPlaneError) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw .keyMaterial(reason: "BIO_new failed") }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { throw .keyMaterial(reason: "PEM write: \(openSSLErrors())") }
        var data: UnsafeMutablePointer<CChar>? = nil
        let length = scistream_BIO_get_mem_data(bio, &data)
        guard length > 0, let data else { throw .keyMaterial(reason: "empty PEM") }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }
}

/// Drains OpenSSL's error queue (`OpenSSLErrorQueue`) into one line.
func openSSLErrors() -> String {
    let lines = OpenSSLErrorQueue.drain().lines
    return lines.isEmpty ? "unknown OpenSSL error" : lines.joined(separator: "; ")
}
