import COpenSSL
import Foundation
import Testing
import SciStreamTLS
import SciStreamCommandLine

@Suite struct TLSContextTests {
    @Test func serverContextLoadsTheScriptsCertificate() throws {
        let certificates = try Certificates.get()
        let context = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                            keyPath: certificates.loopback.key)
        #expect(context.side == .server)
        #expect(try TLSContext.client(trustAnchorPath: certificates.loopback.certificate).side == .client)
    }

    @Test func scriptWritesAPrivateKeyOnlyTheOwnerCanRead() throws {
        let certificates = try Certificates.get()
        let attributes = try FileManager.default.attributesOfItem(atPath: certificates.loopback.key)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    @Test func missingCertificateNamesThePathAndFlag() throws {
        let certificates = try Certificates.get()
        let path = certificates.folder + "/nowhere/server.crt"
        let error = #expect(throws: TLSError.self) {
            try TLSContext.server(certificatePath: path, keyPath: certificates.loopback.key)
        }
        #expect(error?.kind == .certificateFileMissing(path: path))
        #expect(error?.file == .certificate)
        #expect(error?.description.contains("--server") == false)
        #expect(error?.description.contains(path) == true)
        #expect(error.map(ErrorWording.tls)?.contains("--server_crt") == true)
        #expect(error?.description.contains("No such file or directory") == true)
    }

    @Test func missingKeyNamesThePathAndFlag() throws {
        let certificates = try Certificates.get()
        let path = certificates.folder + "/nowhere/server.key"
        let error = #expect(throws: TLSError.self) {
            try TLSContext.server(certificatePath: certificates.loopback.certificate, keyPath: path)
        }
        #expect(error?.kind == .keyFileMissing(path: path))
        #expect(error?.description.contains(path) == true)
        #expect(error.map(ErrorWording.tls)?.contains("--server_key") == true)
    }

    @Test func missingTrustAnchorNamesThePathAndFlag() throws {
        let certificates = try Certificates.get()
        let path = certificates.folder + "/nowhere/ca.crt"
        let error = #expect(throws: TLSError.self) {
            try TLSContext.client(trustAnchorPath: path)
        }
        #expect(error?.kind == .certificateFileMissing(path: path))
        #expect(error?.description.contains(path) == true)
        #expect(error.map(ErrorWording.tls)?.contains("--server_cert") == true)
    }

    @Test func aFolderIsNotACertificate() throws {
        let certificates = try Certificates.get()
        let error = #expect(throws: TLSError.self) {
            try TLSContext.client(trustAnchorPath: certificates.folder)
        }
        #expect(error?.kind == .certificateFileMissing(path: certificates.folder))
        #expect(error?.description.contains("not a regular file") == true)
    }

    @Test func garbageIsNotACertificate() throws {
        let certificates = try Certificates.get()
        let path = certificates.folder + "/garbage-\(UUID().uuidString).crt"
        try Data("this is not PEM\n".utf8).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: TLSError.self) {
            try TLSContext.server(certificatePath: path, keyPath: certificates.loopback.key)
        }
        guard case .badCertificate(let badPath, let reason)? = error?.kind else {
            Issue.record("expected badCertificate, got \(String(describing: error))")
            return
        }
        #expect(badPath == path)
        #expect(reason.contains("no PEM certificate"))
        #expect(error.map(ErrorWording.tls)?.contains("--server_crt") == true)
    }

    @Test func aCertificateIsNotAKey() throws {
        let certificates = try Certificates.get()
        let error = #expect(throws: TLSError.self) {
            try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                  keyPath: certificates.loopback.certificate)
        }
        guard case .badKey(let path, _)? = error?.kind else {
            Issue.record("expected badKey, got \(String(describing: error))")
            return
        }
        #expect(path == certificates.loopback.certificate)
        #expect(error?.file == .privateKey && error?.looksLikeCertificate == true)
        #expect(error?.description.contains("--server") == false)
        #expect(error.map(ErrorWording.tls)?.contains("--server_key") == true)
        #expect(error.map(ErrorWording.tls)?.contains("swapped") == true)
    }

    @Test func aKeyIsNotACertificate() throws {
        let certificates = try Certificates.get()
        let error = #expect(throws: TLSError.self) {
            try TLSContext.server(certificatePath: certificates.loopback.key, keyPath: certificates.loopback.key)
        }
        guard case .badCertificate(let path, let reason)? = error?.kind else {
            Issue.record("expected badCertificate, got \(String(describing: error))")
            return
        }
        #expect(path == certificates.loopback.key)
        #expect(reason.contains("no PEM certificate") && !reason.contains("--server"))
        #expect(error?.looksLikeKey == true)
        #expect(error.map(ErrorWording.tls)?.contains("are --server_crt and --server_key swapped?") == true)
        let client = #expect(throws: TLSError.self) {
            try TLSContext.client(trustAnchorPath: certificates.loopback.key)
        }
        #expect(client.map(ErrorWording.tls)?.contains("(--server_cert)") == true)
        #expect(client?.description.contains("it holds a private key, not a certificate") == true)
    }

    @Test func anotherCertificatesKeyIsAMismatch() throws {
        let certificates = try Certificates.get()
        let error = #expect(throws: TLSError.self) {
            try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                  keyPath: certificates.stranger.key)
        }
        #expect(error?.kind == .keyMismatch(certificatePath: certificates.loopback.certificate,
                                            keyPath: certificates.stranger.key))
        #expect(error?.description.contains("does not belong") == true)
    }

    @Test func theScriptRejectsANameThatCouldInjectConfig() throws {
        let certificates = try Certificates.get()
        #expect(throws: FixtureError.self) {
            try Certificates.runScript(["-o", certificates.folder, "evil\nsubjectAltName=DNS:x"])
        }
    }

    @Test func failuresLeaveNothingOnTheOpenSSLErrorQueue() throws {
        // The queue is per thread and tasks hop threads: a failure must not leave errors behind
        // for whatever runs next on this thread. (These calls are synchronous: one thread.)
        let certificates = try Certificates.get()
        ERR_clear_error()
        _ = try? TLSContext.server(certificatePath: certificates.loopback.certificate,
                                   keyPath: certificates.stranger.key)
        #expect(ERR_peek_error() == 0)
        _ = try? TLSContext.server(certificatePath: certificates.loopback.key, keyPath: certificates.loopback.key)
        #expect(ERR_peek_error() == 0)
        _ = try? TLSContext.server(certificatePath: certificates.loopback.certificate,
                                   keyPath: certificates.loopback.certificate)
        #expect(ERR_peek_error() == 0)
        _ = try? TLSContext.client(trustAnchorPath: certificates.loopback.key)
        #expect(ERR_peek_error() == 0)
        _ = try TLSContext.server(certificatePath: certificates.loopback.certificate,
                                  keyPath: certificates.loopback.key)
        #expect(ERR_peek_error() == 0)
    }
}
