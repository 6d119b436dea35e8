#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import SciStreamSystem
import SciStreamTLS

/// The control channel takes only AEAD ciphers: in TLS 1.2, ECDHE with AES-GCM or ChaCha20-Poly1305
/// (TLS 1.3's suites are all AEAD). Tried with `openssl s_client` and `s_server`, an implementation
/// that is not ours, offering only a CBC suite.
@Suite struct TLSCipherTests {
    /// Runs `openssl` with `arguments` to completion (bounded); its exit status and output.
    private func openssl(_ arguments: [String], folder: String) async throws -> (TerminationStatus?, String) {
        let log = folder + "/openssl-\(UInt32.random(in: 0...UInt32.max)).out"
        defer { unlink(log) }
        let child = try await ChildProcess.spawn(executable: "/usr/bin/openssl", arguments: arguments,
                                                 environment: ["PATH=/usr/bin:/bin"], logPath: log)
        var status = await child.wait(timeout: .seconds(20))
        if status == nil { status = await child.terminate(grace: .seconds(1)) }
        return (status, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    @Test(arguments: [("ECDHE-ECDSA-AES128-SHA", false), ("ECDHE-ECDSA-AES256-SHA384", false),
                      ("ECDHE-ECDSA-AES128-GCM-SHA256", true), ("ECDHE-ECDSA-CHACHA20-POLY1305", true)])
    func serverTakesOnlyAEADSuitesInTLS12(_ cipher: String, _ accepted: Bool) async throws {
        let certificates = try Certificates.get()
        let server = try TLSContext.server(certificatePath: certificates.loopback.certificate, keyPath: certificates.loopback.key)
        let (listener, port) = try makeListener()
        defer { listener.close() }
        let served = Task { () -> String in
            do {
                let socket = try await listener.accept()
                let stream = try await TLSStream.accept(socket: socket, context: server, deadline: soon())
                defer { stream.close() }
                return "accepted"
            } catch {
                return "refused: \(error)"
            }
        }
        let (status, output) = try await openssl(["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_2", "-cipher", cipher,
                                                  "-CAfile", certificates.loopback.certificate], folder: certificates.folder)
        let outcome = await served.value
        if accepted {
            #expect(outcome == "accepted", "\(cipher): \(outcome)\n\(output)")
            #expect(output.contains("Cipher is \(cipher)"), "\(output)")
        } else {
            #expect(outcome.hasPrefix("refused"), "\(cipher): \(outcome)")
            #expect(status != .exited(code: 0), "\(output)")
            #expect(!output.contains("Cipher is \(cipher)"), "\(output)")
        }
    }

    @Test(arguments: [("ECDHE-ECDSA-AES128-SHA", false), ("ECDHE-ECDSA-AES128-SHA256", false),
                      ("ECDHE-ECDSA-AES256-GCM-SHA384", true)])
    func clientOffersOnlyAEADSuitesInTLS12(_ cipher: String, _ accepted: Bool) async throws {
        let certificates = try Certificates.get()
        let (probe, port) = try makeListener()
        probe.close()  // a free port for s_server
        let log = certificates.folder + "/s_server-\(port).out"
        defer { unlink(log) }
        // -www: s_server answers on its own instead of reading stdin (which is /dev/null here).
        let server = try await ChildProcess.spawn(
            executable: "/usr/bin/openssl",
            arguments: ["s_server", "-accept", "127.0.0.1:\(port)", "-naccept", "1", "-www", "-tls1_2", "-cipher", cipher,
                        "-cert", certificates.loopback.certificate, "-key", certificates.loopback.key],
            environment: ["PATH=/usr/bin:/bin"], logPath: log)
        let client = try TLSContext.client(trustAnchorPath: certificates.loopback.certificate)
        var outcome = "not attempted"
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard let socket = try? await connectPlain(port: port) else {
                try await Task.sleep(for: .milliseconds(20))  // s_server is not listening yet
                continue
            }
            do {
                let stream = try await TLSStream.connect(socket: socket, context: client, serverName: "127.0.0.1", deadline: soon())
                outcome = "connected with \(stream.protocolVersion ?? "?")"
                stream.close()
            } catch {
                outcome = "refused: \(error)"
            }
            break
        }
        if !accepted {
            // s_server writes its verdict after the client has seen the refusal: give it a moment.
            let logged = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < logged, !((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("no shared cipher") {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        _ = await server.terminate(grace: .seconds(1))
        let serverLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        if accepted {
            #expect(outcome == "connected with TLSv1.2", "\(cipher): \(outcome)\n\(serverLog)")
        } else {
            #expect(outcome.hasPrefix("refused"), "\(cipher): \(outcome)")
            #expect(serverLog.contains("no shared cipher"), "\(serverLog)")
        }
        #expect(TLSContext.tls12Ciphers.split(separator: ":").allSatisfy { $0.contains("GCM") || $0.contains("CHACHA20") })
    }
}
