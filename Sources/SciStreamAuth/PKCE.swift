import COpenSSL

/// Proof Key for Code Exchange (RFC 7636), S256: a fresh secret verifier per login, and its
/// challenge (base64url of its SHA-256) sent in the authorize URL.
public struct PKCE: Sendable, Equatable {
    public let verifier: String
    public let challenge: String

    /// A new pair from 32 random bytes (a 43-character verifier).
    public static func make() throws(AuthError) -> PKCE {
        let verifier = base64URL(try randomBytes(32))
        return PKCE(verifier: verifier)
    }

    /// The pair for a given verifier (43-128 characters of `[A-Za-z0-9-._~]`).
    public init(verifier: String) {
        self.verifier = verifier
        self.challenge = PKCE.base64URL(PKCE.sha256(Array(verifier.utf8)))
    }

    /// Base64url without padding (RFC 4648 section 5), as PKCE and OAuth use it.
    public static func base64URL(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index + 3 <= bytes.count {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            index += 3
        }
        let rest = bytes.count - index
        if rest == 1 {
            let n = UInt32(bytes[index]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)]]
        } else if rest == 2 {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)]]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// SHA-256 of `bytes` (OpenSSL's one-shot EVP digest).
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { input in
            digest.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        // EVP_Digest with SHA-256 fails only when OpenSSL itself is broken (no memory, no provider).
        precondition(ok == 1 && length == 32, "OpenSSL SHA-256 failed")
        return digest
    }

    /// `count` bytes from OpenSSL's CSPRNG.
    public static func randomBytes(_ count: Int) throws(AuthError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        guard ok == 1 else {
            throw .noRandomness
        }
        return bytes
    }
}
