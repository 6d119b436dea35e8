import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire
import SciStreamSystem
@testable import SciStreamServer
import FakeGlobusAuth

/// The operator's view (issue 19): an identity in `--admin-identities`, and whoever reaches the local
/// admin socket (`--admin-socket`, mode 0600), list every session with its owner and release any,
/// by the uid prefix `list` shows; what they do is audited with `"admin":true`. Real s2cs, real
/// HAProxy, real s2uc.
@Suite(.serialized) struct AdminTests {
    static func auditLines(_ daemon: Daemon) -> [String] {
        ((try? String(contentsOf: daemon.configFolder.appendingPathComponent("audit.log"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    @Test func theLocalAdminSocketListsEverySessionWithItsOwnerAndReleasesAnyByPrefix() async throws {
        let daemon = try await Daemon(type: "Haproxy", tls: false, ports: try .reserve(4))
        defer { daemon.stop() }
        let socket = daemon.configFolder.appendingPathComponent("admin.sock").path
        var status = stat()
        #expect(lstat(socket, &status) == 0 && (status.st_mode & S_IFMT) == S_IFSOCK, "no admin socket at \(socket)")
        #expect(status.st_mode & 0o777 == 0o600, "admin socket mode \(String(status.st_mode & 0o777, radix: 8))")

        let inbound = await Harness.s2uc(["inbound_request"] + daemon.clientArguments + ["--remote_ip", "127.0.0.1", "--receiver_ports", "5999", "--num_conn", "1"])
        #expect(inbound.status == 0, "\(inbound.stderr)")
        let uid = String(try #require(inbound.lines.dropFirst().first).prefix(36))
        let prefix = String(uid.prefix(8))
        let proxy = try #require(GRPCEndToEndTests.pid(daemon, uid))

        let list = await Harness.s2uc(["list", "--s2cs", "unix:\(socket)"])
        #expect(list.status == 0, "\(list.stderr)")
        #expect(list.stdout.contains(prefix) && list.stdout.contains("owner 127.0.0.1 (no authentication)"), "\(list.stdout)")

        // Over the network, a prefix is not enough: only an operator names a session by it.
        let notAdmin = await Harness.s2uc(["release", prefix] + daemon.clientArguments)
        #expect(notAdmin.status == 1 && notAdmin.stderr.contains("only for this s2cs's operators"), "\(notAdmin.stderr)")
        #expect(processExists(proxy))
        // Someone who cannot open the socket file is told so.
        let stranger = await Harness.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Harness.s2uc, "list", "--s2cs", "unix:\(socket)"],
                                         environment: ["HOME": "/tmp"])
        #expect(stranger.status == 1 && stranger.stderr.contains("cannot connect to the s2cs admin socket"), "\(stranger.stderr)")

        let released = await Harness.s2uc(["release", prefix, "--s2cs", "unix:\(socket)"])
        #expect(released.status == 0 && released.stdout == "Release completed\n", "\(released.stdout) \(released.stderr)")
        #expect(!processExists(proxy), "the proxy \(proxy) outlived the admin's release")
        let after = await Harness.s2uc(["list"] + daemon.clientArguments)
        #expect(!after.stdout.contains(prefix), "\(after.stdout)")
        let audited = Self.auditLines(daemon).filter { $0.contains("\"event\":\"release\"") && $0.contains("\"status\":\"OK\"") }
        #expect(audited.count == 1 && audited[0].contains("\"admin\":true") && audited[0].contains("\"session\":\"\(prefix)\""), "\(audited)")

        daemon.stop()
        #expect(!FileManager.default.fileExists(atPath: socket), "the admin socket outlived s2cs")
    }

    @Test func adminSocketNoneOpensNoneAndABadPathIsAUsageError() async throws {
        let daemon = try await Daemon(tls: false, extra: ["--admin-socket", "none"])
        defer { daemon.stop() }
        #expect(!FileManager.default.fileExists(atPath: daemon.configFolder.appendingPathComponent("admin.sock").path))
        let long = "/tmp/" + String(repeating: "a", count: 120)
        let bad = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock", "--admin-socket", long])
        #expect(bad.status == 64 && bad.stderr.hasPrefix("Error: bad --admin-socket"), "\(bad.stderr)")
        let anonymous = await Harness.run(Harness.s2cs, ["--port", "0", "--ssl=False", "--type", "Mock", "--admin-identities", "ops@example.org"])
        #expect(anonymous.status == 64 && anonymous.stderr.contains("--admin-identities needs authentication"), "\(anonymous.stderr)")
    }

    @Test func anAdminIdentitySeesEveryOwnerAndReleasesAnotherIdentitysSession() async throws {
        let fake = try FakeGlobusAuth(clientID: "abc", clientSecret: "xyz")
        defer { fake.stop() }
        let daemon = try await Daemon(ports: try .reserve(10), extra: ["--client-id", "abc", "--client-secret", "xyz",
                                                                       "--allowed-identities", "ada@example.org", "--admin-identities", "ops@facility.org"],
                                      environment: ["GLOBUS_SDK_SERVICE_URL_AUTH": fake.baseURL])
        defer { daemon.stop() }
        let scope = "https://auth.globus.org/scopes/abc/scistream"
        let (ada, _) = fake.mint(scope: scope)
        let (ops, _) = fake.mint(scope: scope, username: "ops@facility.org", subject: "00000000-0000-4000-8000-00000000000f")
        let (eve, _) = fake.mint(scope: scope, username: "eve@example.org", subject: "00000000-0000-4000-8000-0000000000e5")
        let uid = SessionID.random()
        let session = try await driveSession(daemon.target, token: ada, uid: uid, targets: ["127.0.0.1:5001"])
        #expect(session.update?.code == .ok, "\(session)")

        // The operator (not in --allowed-identities: an admin needs no second entry) sees Ada's session and whose it is.
        guard case .listReply(let opsList) = try await callOnce(daemon.target, .list(ListSessions(token: ops))) else { Issue.record("no list"); return }
        #expect(opsList.sessions.map(\.uid) == [String(uid.prefix(8))])
        #expect(opsList.sessions.first?.targets == ["127.0.0.1:5001"] && opsList.sessions.first?.note.contains("owner ada@example.org") == true, "\(opsList.sessions)")
        // Eve, neither owner nor admin, may not name it by prefix (and is not served at all here).
        guard case .releaseReply(let refused) = try await callOnce(daemon.target, .release(Release(token: eve, session: .other(String(uid.prefix(8)))))) else { Issue.record("no release"); return }
        #expect(refused.code == .permissionDenied, "\(refused)")
        // The operator ends it by the prefix it saw.
        guard case .releaseReply(let released) = try await callOnce(daemon.target, .release(Release(token: ops, session: .other(String(uid.prefix(8)))))) else { Issue.record("no release"); return }
        #expect(released.code == .ok, "\(released)")
        guard case .listReply(let adaList) = try await callOnce(daemon.target, .list(ListSessions(token: ada))) else { Issue.record("no list"); return }
        #expect(adaList.sessions.isEmpty, "\(adaList.sessions)")
        let audited = Self.auditLines(daemon).filter { $0.contains("\"event\":\"release\"") && $0.contains("\"status\":\"OK\"") }
        #expect(audited.count == 1 && audited[0].contains("\"admin\":true") && audited[0].contains("\"identity\":\"ops@facility.org\""), "\(audited)")
    }
}
