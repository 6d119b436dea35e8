import Foundation
import Testing
import SciStreamGRPC
import SciStreamWire

/// The original s2cs's short flags, as its argument parser (fire 0.5.0) reads them: a one-letter
/// flag names the one parameter starting with that letter, or the parameter of that exact name
/// (`-v` is its `v`, verbose; `--version` is the version).
@Suite struct OriginalFlagsTests {
    @Test func shortTypeAndListenerFlags() async {
        let folder = Harness.temporaryFolder("flags")
        defer { try? FileManager.default.removeItem(at: folder) }
        let common = ["--port", "0", "--bind", "127.0.0.1", "--ssl=False", "--config_folder", folder.appendingPathComponent("s2cs").path]
        let type = await Harness.run(Harness.s2cs, common + ["-t", "haproxy2"], timeout: .seconds(20))
        #expect(type.status == 64)
        #expect(type.stderr.hasPrefix("Error: unknown data server type 'haproxy2' for '--type'"), "\(type.stderr)")
        let listener = await Harness.run(Harness.s2cs, common + ["-t", "Mock", "-l", "192.0.2.1"], timeout: .seconds(20))
        #expect(listener.status == 1)
        #expect(listener.stderr == "Error: --listener-ip 192.0.2.1 is not an address of this host: session listeners could not bind to it (use one of this host's addresses, or 0.0.0.0; behind NAT, bind a local address and give the public one with --advertise-ip)\n")
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("s2cs").path), "nothing written")
    }

    @Test func shortVIsVerbose() async throws {
        for (flags, verbose) in [(["-v"], true), ([], false)] {
            let daemon = try await Daemon(type: "Mock", tls: false, extra: flags, verbose: false)
            defer { daemon.stop() }
            let client = try await GRPCTestClient.connect(host: "127.0.0.1", port: daemon.port, trustAnchor: nil)
            defer { client.close() }
            let answer = try await client.call("req", ControlProto.Request(uid: SessionID.mock.text, role: "PROD", numConn: 0, rate: 0).encoded)
            #expect(answer.status == 3)
            #expect(daemon.log.contains(" debug s2cs: request ") == verbose, "\(flags): \(daemon.log)")
        }
    }
}
