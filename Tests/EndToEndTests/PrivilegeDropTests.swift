import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// s2cs run as root (as in the testbed): its proxies drop to an unprivileged user (`--proxy-user`,
/// default nobody) once they have read their root-owned 0600 files and bound their listeners, and
/// the tunnel still carries bytes.
@Suite(.serialized) struct PrivilegeDropTests {
    static let isRoot = getuid() == 0

    /// The pids of the (non-zombie) processes in process group `group`.
    static func processGroup(_ group: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard processExists(pid), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[2]) == group  // state, ppid, pgrp
        }
    }

    @Test(.enabled(if: isRoot, "s2cs must run as root for its proxies to drop privileges"),
          arguments: [("Haproxy", nil as String?), ("Nginx", nil), ("Stunnel", nil), ("Haproxy", "daemon")])
    func proxiesOfARootS2csRunUnprivilegedAndCarryBytes(type: String, proxyUser: String?) async throws {
        let user = proxyUser ?? "nobody"
        let expectedUID = try #require(getpwnam(user)?.pointee.pw_uid)
        let extra = proxyUser.map { ["--proxy-user", $0] } ?? []
        let producer = try await Daemon(type: type, extra: extra)
        let consumer = try await Daemon(type: type, extra: extra)
        defer { producer.stop(); consumer.stop() }
        #expect(producer.log.contains("proxy_user=\(user)"), "\(producer.log)")
        let app = try ProducerApp(expectedConnections: 1)
        defer { app.stop() }
        let tunnel = try await TunnelTests.setUp(type: type, appPort: app.port, consumerPort: try TunnelTests.freePort(),
                                                 producer: producer, consumer: consumer)

        for daemon in [producer, consumer] {
            let leader = try #require(tunnel.proxyPID(daemon))
            let group = Self.processGroup(leader)
            #expect(group.contains(leader))
            // Every process that handles connections runs as the proxy user: stunnel's one process;
            // HAProxy's and nginx's workers (their masters stay root to manage them).
            let handlers = type == "Stunnel" ? group : group.filter { $0 != leader }
            #expect(!handlers.isEmpty, "\(type): no worker in process group \(leader): \(group)")
            for pid in handlers {
                #expect(realUID(of: pid) == expectedUID, "\(type) process \(pid) runs as uid \(realUID(of: pid).map(String.init) ?? "?"), not \(user)")
            }
            // The session's key stays root's and private: the proxy read it before dropping.
            var info = stat()
            #expect(stat(daemon.configFolder.appendingPathComponent("\(tunnel.uid).key").path, &info) == 0)
            #expect(info.st_uid == 0 && info.st_mode & 0o777 == 0o600)
        }

        let sent = try await sendRandomBytes(to: tunnel.consumerPort, count: 8 << 20)
        let received = await app.results()
        #expect(received.first?.bytes == 8 << 20)
        #expect(received.first?.sha256 == sent)
        for daemon in [producer, consumer] {
            let release = await Harness.s2uc(["release", tunnel.uid] + daemon.clientArguments)
            #expect(release.status == 0, "\(release.stderr)")
        }
    }

    @Test func aProxyUserThatCannotBeUsedIsRefusedAtStartUp() async throws {
        let folder = Harness.temporaryFolder("proxy-user")
        defer { try? FileManager.default.removeItem(at: folder) }
        func s2cs(_ extra: [String], asNobody: Bool = false) async -> Harness.Output {
            let arguments = ["--port", "0", "--ssl=False", "--type", "Haproxy", "--config_folder", folder.appendingPathComponent("s2cs").path] + extra
            if asNobody {
                return await Harness.run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", Harness.s2cs] + arguments)
            }
            return await Harness.run(Harness.s2cs, arguments)
        }
        if Self.isRoot {
            let missing = await s2cs(["--proxy-user", "no-such-user-here"])
            #expect(missing.status == 1)
            #expect(missing.stderr == "Error: --proxy-user no-such-user-here: no user 'no-such-user-here' on this host: name an unprivileged user for the proxies (a dedicated one: useradd --system --no-create-home --shell /usr/sbin/nologin scistream-proxy)\n", "\(missing.stderr)")
            let root = await s2cs(["--proxy-user", "root"])
            #expect(root.status == 1)
            #expect(root.stderr.hasPrefix("Error: --proxy-user root: 'root' is root: proxies must run as an unprivileged user"), "\(root.stderr)")
            let strange = await s2cs(["--proxy-user", "a;b"])
            #expect(strange.status == 1)
            #expect(strange.stderr.hasPrefix("Error: --proxy-user a;b: 'a;b' is not a user name (letters, digits, '.', '_' and '-')"), "\(strange.stderr)")
            let notRoot = await s2cs(["--proxy-user", "daemon"], asNobody: true)
            #expect(notRoot.status == 1)
            #expect(notRoot.stderr == "Error: --proxy-user daemon needs s2cs to run as root (it runs as uid 65534): its proxies already run as uid 65534; leave --proxy-user out\n", "\(notRoot.stderr)")
        } else {
            let notRoot = await s2cs(["--proxy-user", "daemon"])
            #expect(notRoot.status == 1)
            #expect(notRoot.stderr.hasPrefix("Error: --proxy-user daemon needs s2cs to run as root"), "\(notRoot.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("s2cs").path), "nothing written")
    }
}
