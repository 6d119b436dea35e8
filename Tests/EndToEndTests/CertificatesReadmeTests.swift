import Foundation
import Testing
import TestPorts

/// certs/README.md's advice for production, tried on loopback: a gateway certificate signed by an
/// intermediate CA, its chain in --server_crt, and s2uc trusting only the root CA; a renewed
/// certificate from the same CA needs nothing new on the client.
@Suite struct CertificatesReadmeTests {
    static func openssl(_ arguments: String, in folder: URL) async throws {
        let result = await Harness.run("/bin/bash", ["-c", "openssl \(arguments)"], cwd: folder)
        guard result.status == 0 else { throw HarnessError("openssl \(arguments): \(result.stderr)") }
    }

    /// Makes root.crt, an intermediate CA and a gateway certificate `name`.crt (+ `name`-chain.pem).
    static func makeCA(in folder: URL) async throws {
        try "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            .write(to: folder.appendingPathComponent("ca.ext"), atomically: true, encoding: .utf8)
        try "subjectAltName=IP:127.0.0.1\n".write(to: folder.appendingPathComponent("leaf.ext"), atomically: true, encoding: .utf8)
        try await openssl("req -x509 -newkey rsa:2048 -nodes -keyout root.key -out root.crt -days 30 -subj /CN=Facility-Root-CA -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign", in: folder)
        try await openssl("req -new -newkey rsa:2048 -nodes -keyout inter.key -out inter.csr -subj /CN=Facility-Issuing-CA", in: folder)
        try await openssl("x509 -req -in inter.csr -CA root.crt -CAkey root.key -CAcreateserial -out inter.crt -days 30 -extfile ca.ext", in: folder)
    }

    static func makeGatewayCertificate(_ name: String, in folder: URL) async throws {
        try await openssl("req -new -newkey rsa:2048 -nodes -keyout \(name).key -out \(name).csr -subj /CN=127.0.0.1", in: folder)
        try await openssl("x509 -req -in \(name).csr -CA inter.crt -CAkey inter.key -CAcreateserial -out \(name).crt -days 30 -extfile leaf.ext", in: folder)
        let chain = try String(contentsOf: folder.appendingPathComponent("\(name).crt"), encoding: .utf8)
            + String(contentsOf: folder.appendingPathComponent("inter.crt"), encoding: .utf8)
        try chain.write(to: folder.appendingPathComponent("\(name)-chain.pem"), atomically: true, encoding: .utf8)
    }

    @Test func aCASignedChainIsTrustedThroughTheRootAlone() async throws {
        let folder = Harness.temporaryFolder("ca")
        defer { try? FileManager.default.removeItem(at: folder) }
        try await Self.makeCA(in: folder)
        for name in ["gateway", "renewed"] {
            try await Self.makeGatewayCertificate(name, in: folder)
            let ports = try PortBlock.reserve()
            let daemon = try await Background(
                "\(Harness.s2cs) --port 0 --bind 127.0.0.1 --listener-ip 127.0.0.1 --type Mock --port-range \(ports) --config_folder \(folder.path)/\(name)-folder --server_crt \(folder.path)/\(name)-chain.pem --server_key \(folder.path)/\(name).key",
                readiness: .prints("s2cs listening on"))
            let port = daemon.stdout.split(separator: "\n").first { $0.hasPrefix("s2cs listening on") }?.split(separator: ":").last.map(String.init) ?? ""
            let request = await Harness.s2uc(["inbound_request", "--s2cs", "127.0.0.1:\(port)", "--server_cert", folder.appendingPathComponent("root.crt").path, "--num_conn", "1"])
            #expect(request.status == 0, "\(name): \(request.stderr)")
            #expect(request.lines.last == "Listeners: ['127.0.0.1:\(ports.lower)']")

            // Without the intermediate in --server_crt, the root alone cannot verify it.
            if name == "gateway" {
                let leafOnly = try await Background(
                    "\(Harness.s2cs) --port 0 --bind 127.0.0.1 --listener-ip 127.0.0.1 --type Mock --config_folder \(folder.path)/leaf-folder --server_crt \(folder.path)/gateway.crt --server_key \(folder.path)/gateway.key",
                    readiness: .prints("s2cs listening on"))
                let leafPort = leafOnly.stdout.split(separator: "\n").first { $0.hasPrefix("s2cs listening on") }?.split(separator: ":").last.map(String.init) ?? ""
                let refused = await Harness.s2uc(["inbound_request", "--s2cs", "127.0.0.1:\(leafPort)", "--server_cert", folder.appendingPathComponent("root.crt").path, "--num_conn", "1"])
                #expect(refused.status == 1)
                #expect(refused.stderr.contains("TLS verification of s2cs"), "\(refused.stderr)")
                await leafOnly.stop()
            }
            await daemon.stop()
        }
    }
}
