import SciStreamWire
import Foundation
import Testing
@testable import SciStreamDataPlane
import SciStreamSystem

@Suite("SessionKeys")
struct SessionKeysTests {
    static let uid = "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"
    static let other = "0d1f6a52-31c4-4e8b-9a7e-5b2f3c4d5e6f"
    static let session = SessionID(uid)!  // safe: a canonical uid
    static let otherSession = SessionID(other)!  // safe: a canonical uid

    @Test func sameUIDGivesIdenticalBytes() throws {
        let first = try SessionKeys.derive(Self.session)
        let second = try SessionKeys.derive(Self.session)
        #expect(first.certificateDER == second.certificateDER)
        #expect(first.certificatePEM == second.certificatePEM)
        #expect(first.privateKeyPEM == second.privateKeyPEM)
        // Case does not matter: the UUID's bytes are the input.
        #expect(try SessionKeys.derive(#require(SessionID(Self.uid.uppercased()))) == first)
    }

    @Test func differentUIDsGiveDifferentKeys() throws {
        let first = try SessionKeys.derive(Self.session)
        let second = try SessionKeys.derive(Self.otherSession)
        #expect(first.privateKeyPEM != second.privateKeyPEM)
        #expect(first.certificateDER != second.certificateDER)
    }

    @Test func pemShapes() throws {
        let keys = try SessionKeys.derive(Self.session)
        #expect(keys.certificatePEM.hasPrefix("-----BEGIN CERTIFICATE-----\n"))
        #expect(keys.certificatePEM.hasSuffix("-----END CERTIFICATE-----\n"))
        #expect(keys.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))  // PKCS#8
        #expect(keys.privateKeyPEM.hasSuffix("-----END PRIVATE KEY-----\n"))
    }

    @Test func theUIDIsNotInTheCertificate() throws {
        let keys = try SessionKeys.derive(Self.session)
        let der = keys.certificateDER
        let uidBytes = SessionID(Self.uid)!.bytes
        let text = String(decoding: der, as: UTF8.self)
        #expect(!text.contains(Self.uid))
        #expect(!text.contains("4f8583bc"))
        // Nor its 16 raw bytes.
        let found = der.indices.dropLast(15).contains { Array(der[$0..<$0 + 16]) == uidBytes }
        #expect(!found)
    }

    /// Keys are derived only from a `SessionID`: a text that is not a uid never becomes one.
    @Test func invalidUIDIsRejected() {
        for bad in ["", "not-a-uuid", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3\n",
                    "4f8583bca4d311ee9fd6034d1fcbd7c3", "4f8583bc-a4d3-11ee-9fd6_034d1fcbd7c3", "gf8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"] {
            #expect(SessionID(bad) == nil)
        }
    }

    @Test func opensslParsesAndVerifiesIt() async throws {
        let folder = try TemporaryFolder("keys")
        defer { folder.remove() }
        let keys = try SessionKeys.derive(Self.session)
        try folder.write("cert.pem", keys.certificatePEM)
        try folder.write("key.pem", keys.privateKeyPEM)

        let (parsed, text) = try await run("/usr/bin/openssl", ["x509", "-noout", "-text", "-in", folder.file("cert.pem")], in: folder)
        #expect(parsed == .exited(code: 0), "\(text)")
        #expect(text.contains("Version: 3 (0x2)"))
        #expect(text.contains("Signature Algorithm: ED25519"))
        #expect(text.contains("Issuer: CN = scistream-s2ds"))
        #expect(text.contains("Subject: CN = scistream-s2ds"))
        #expect(text.contains("Not Before: Jan  1 00:00:00 2025 GMT"))
        #expect(text.contains("Not After : Dec 31 23:59:59 2099 GMT"))
        #expect(text.contains("CA:TRUE"))
        #expect(text.contains("Digital Signature, Certificate Sign"))
        #expect(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"))
        #expect(text.contains("DNS:scistream-s2ds"))

        let (verified, verifyText) = try await run("/usr/bin/openssl",
            ["verify", "-CAfile", folder.file("cert.pem"), "-purpose", "sslserver", folder.file("cert.pem")], in: folder)
        #expect(verified == .exited(code: 0), "\(verifyText)")
        #expect(verifyText.contains(": OK"))
        let (client, clientText) = try await run("/usr/bin/openssl",
            ["verify", "-CAfile", folder.file("cert.pem"), "-purpose", "sslclient", "-verify_hostname", SessionKeys.peerName,
             folder.file("cert.pem")], in: folder)
        #expect(client == .exited(code: 0), "\(clientText)")

        // The key is the certificate's key.
        let (pub1, certKey) = try await run("/usr/bin/openssl", ["x509", "-noout", "-pubkey", "-in", folder.file("cert.pem")], in: folder)
        let (pub2, keyKey) = try await run("/usr/bin/openssl", ["pkey", "-pubout", "-in", folder.file("key.pem")], in: folder)
        #expect(pub1 == .exited(code: 0) && pub2 == .exited(code: 0))
        #expect(certKey == keyKey)
        #expect(certKey.contains("BEGIN PUBLIC KEY"))
    }

    @Test func anotherUIDsCertificateDoesNotVerify() async throws {
        let folder = try TemporaryFolder("keys")
        defer { folder.remove() }
        try folder.write("a.pem", try SessionKeys.derive(Self.session).certificatePEM)
        try folder.write("b.pem", try SessionKeys.derive(Self.otherSession).certificatePEM)
        let (status, text) = try await run("/usr/bin/openssl", ["verify", "-CAfile", folder.file("a.pem"), folder.file("b.pem")], in: folder)
        #expect(status != .exited(code: 0), "\(text)")
    }
}
