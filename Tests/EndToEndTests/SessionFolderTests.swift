import Foundation
import Testing

/// One s2cs per session folder (docs/dataplane.md): a second one on a folder in use is refused,
/// naming the flag and the pid that holds it, and the folder is free again once the first has gone.
@Suite struct SessionFolderTests {
    @Test func aSecondS2csOnAFolderInUseIsRefusedNamingTheFlagAndThePid() async throws {
        let first = try await Daemon(type: "Mock", tls: false)
        defer { first.stop() }
        let folder = first.configFolder.path
        #expect(try String(contentsOfFile: folder + "/s2cs.lock", encoding: .utf8) == "\(first.pid)\n")
        let second = await Harness.run(Harness.s2cs, ["--port", "0", "--bind", "127.0.0.1", "--ssl=False", "--type", "Mock", "--config-folder", folder],
                                       timeout: .seconds(20))
        #expect(second.status == 1)
        #expect(second.stdout.isEmpty, "it never listened: \(second.stdout)")
        #expect(second.stderr == "Error: the session folder \(folder) is in use by another s2cs (pid \(first.pid), holding \(folder)/s2cs.lock): "
                + "give each s2cs a --config-folder of its own\n")
        // The first one is untouched; once it has stopped, the folder is free.
        #expect(await Harness.s2uc(["inbound_request", "--num_conn", "1", "--receiver_ports", "5001", "--remote_ip", "127.0.0.1"] + first.clientArguments).status == 0)
        first.stop()
        let next = try await Daemon(type: "Mock", tls: false, extra: ["--config-folder", folder])
        defer { next.stop() }
        #expect(try String(contentsOfFile: folder + "/s2cs.lock", encoding: .utf8) == "\(next.pid)\n")
    }

    /// `$HAPROXY_CONFIG_PATH` is a folder the operator chose: used as it is (no per-port subfolder), and locked.
    @Test func theFolderFromTheEnvironmentIsUsedAsItIs() async throws {
        let home = Harness.temporaryFolder("home")
        defer { try? FileManager.default.removeItem(at: home) }
        let chosen = home.appendingPathComponent("sessions")
        let daemon = try await Daemon(type: "Mock", tls: false, environment: ["HAPROXY_CONFIG_PATH": chosen.path], home: home)
        defer { daemon.stop() }
        #expect(try String(contentsOfFile: chosen.path + "/s2cs.lock", encoding: .utf8) == "\(daemon.pid)\n")
        #expect(!FileManager.default.fileExists(atPath: home.appendingPathComponent(".scistream").path))
    }
}
