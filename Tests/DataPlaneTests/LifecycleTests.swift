#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import Testing
@testable import SciStreamDataPlane
import SciStreamCommandLine
import SciStreamServer
import SciStreamSystem

/// Start failures, unexpected exits, stale proxies, and the bookkeeping around them, with the real proxies.
@Suite("Proxy lifecycle", .serialized)
struct LifecycleTests {
    static let tlsTypes: [DataServerType] = [.haproxy, .nginx, .stunnel]

    @Test("a listener with a newline, space, quote, '#' or ';' never reaches a config", arguments: tlsTypes)
    func injectionIsRejectedBeforeAnyFile(_ type: DataServerType) async throws {
        let folder = try TemporaryFolder("dp")
        let plane = try makePlane(type, folder)
        let uid = newUID()
        let good = ProxyEndpoint(host: "127.0.0.1", port: try freePort())
        let hostile = [
            "127.0.0.1\n    bind 0.0.0.0", "127.0.0.1 ssl", "\"127.0.0.1\"", "127.0.0.1#", "127.0.0.1;", "'x'",
            "a{b}", "", "[::1", "::1]", "999.1.1.1", "-x", "127.0.0.1\r", "host/name", "$HOME", "[127.0.0.1]",
        ]
        try await withPlanes([plane], folders: [folder]) {
            for host in hostile {
                for spec in [
                    ProxySpec(uid: uid, role: .prod, listeners: [ProxyEndpoint(host: host, port: 5100)], targets: [good], rateKbps: 0),
                    ProxySpec(uid: uid, role: .cons, listeners: [good], targets: [ProxyEndpoint(host: host, port: 5100)], rateKbps: 0),
                ] {
                    do {
                        try await plane.start(spec)
                        Issue.record("accepted host \(host.debugDescription)")
                    } catch let error as DataPlaneError {
                        guard case .invalidSpec(let session, let reason) = error else {
                            Issue.record("unexpected error \(error)")
                            continue
                        }
                        #expect(session == String(uid.prefix(8)))
                        #expect(!reason.contains("\n") && !reason.contains("\r"), "the message itself must stay one line")
                    }
                }
            }
            for spec in [
                ProxySpec(uid: uid, role: .prod, listeners: [ProxyEndpoint(host: "127.0.0.1", port: 0)], targets: [good], rateKbps: 0),
                ProxySpec(uid: uid, role: .prod, listeners: [], targets: [good], rateKbps: 0),
                ProxySpec(uid: uid, role: .prod, listeners: [good], targets: [], rateKbps: 0),
                ProxySpec(uid: uid, role: .prod, listeners: [good, good], targets: [good], rateKbps: 0),
                ProxySpec(uid: uid, role: .prod, listeners: [good], targets: [good], rateKbps: -1),
            ] {
                await #expect(throws: DataPlaneError.self) { try await plane.start(spec) }
            }
            // A text that is not a uid never becomes a ProxySpec: it has no SessionID.
            for badUID in ["../../etc/passwd", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3\nx", "x"] {
                #expect(SessionID(badUID) == nil)
            }
            #expect(folder.contents().isEmpty, "files written: \(folder.contents())")
            #expect(await plane.status(uid: uid) == nil)
        }
    }

    @Test("a taken port is refused before launch: nothing written, nothing started", arguments: tlsTypes)
    func takenPortIsCheckedBeforeLaunch(_ type: DataServerType) async throws {
        let folder = try TemporaryFolder("dp")
        let plane = try makePlane(type, folder)
        let holder = try Socket.listen(on: try SocketAddress.resolve(host: "127.0.0.1", port: 0))
        defer { holder.close() }
        let port = holder.localAddress!.port  // safe: bound
        let uid = newUID()
        try await withPlanes([plane], folders: [folder]) {
            do {
                try await plane.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(try freePort()), loopback(port)],
                                                targets: [loopback(9)], rateKbps: 0))
                Issue.record("started on a taken port")
            } catch let error as DataPlaneError {
                #expect(error.description == "cannot listen on 127.0.0.1:\(port) for session \(uid.prefix(8)): Address already in use")
            }
            #expect(folder.contents().isEmpty)
            #expect(await plane.status(uid: uid) == nil)
        }
    }

    @Test("a taken port reported by the proxy itself: its wording, no process or file left", arguments: tlsTypes)
    func takenPortIsReportedByTheProxy(_ type: DataServerType) async throws {
        let folder = try TemporaryFolder("dp")
        let sink = LogSink.memory()
        let plane = try makePlane(type, folder, sink: sink, checkListeners: false)
        let holder = try Socket.listen(on: try SocketAddress.resolve(host: "127.0.0.1", port: 0))
        defer { holder.close() }
        let port = holder.localAddress!.port  // safe: bound
        let uid = newUID()
        try await withPlanes([plane], folders: [folder]) {
            do {
                try await plane.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(port)], targets: [loopback(9)], rateKbps: 0))
                Issue.record("started on a taken port")
            } catch let error as DataPlaneError {
                guard case .startFailed(let failedType, let session, let message) = error else {
                    Issue.record("unexpected error: \(error)")
                    return
                }
                #expect(failedType == type)
                #expect(session == String(uid.prefix(8)))
                #expect(message.contains("Address already in use"), "\(message)")
                #expect(message.contains("\(port)"), "\(message)")
                #expect(error.description.hasPrefix("\(type.binary!) failed to start for session \(uid.prefix(8)): "))
                #expect(!error.description.contains(uid), "the full uid leaked: \(error)")
            }
            #expect(folder.contents() == ["\(uid).log"])
            #expect(processes(mentioning: folder.path).isEmpty)
            #expect(!sink.recorded.contains { $0.contains(uid) })
        }
    }

    @Test("a proxy killed with SIGKILL: its handle's status becomes exited, not stopped; stop still cleans up", arguments: tlsTypes)
    func unexpectedExitIsNoticed(_ type: DataServerType) async throws {
        let folder = try TemporaryFolder("dp")
        let sink = LogSink.memory()
        let plane = try makePlane(type, folder, sink: sink)
        let producer = try ProducerApp()
        let uid = newUID()
        let port = try freePort()
        try await withPlanes([plane], folders: [folder], producer: producer) {
            try await plane.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(port)],
                                            targets: [loopback(producer.port)], rateKbps: 0))
            guard let pid = await runningPID(plane, uid) else { return }
            #expect(kill(pid, SIGKILL) == 0)
            let deadline = ContinuousClock.now + .seconds(10)
            while await plane.status(uid: uid) == .running(pid: pid), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(await plane.status(uid: uid) == .exited(description: "killed by SIGKILL"))
            expectGone(pid)
            // Its owner (the registry, SessionRegistryTests) counts and logs the exit: not a stop.
            #expect(await plane.proxy(uid: uid)?.wasStopped == false)
            // Its workers went with it (nginx's would keep serving): nobody listens any more.
            let addresses = try ListenerProbe.addresses(of: ConfigEndpoint(loopback(port))!)
            #expect(!ListenerProbe.isListening(addresses, in: try ListenerProbe.listeningSockets(on: addresses)))
            #expect(processes(mentioning: folder.path).isEmpty)

            let proxy = await plane.proxy(uid: uid)
            await plane.stop(uid: uid)
            #expect(proxy?.wasStopped == false)  // it had exited before the stop
            #expect(folder.contents() == ["\(uid).log"])
        }
    }

    @Test("reapStale stops a proxy whose data plane was abandoned, and deletes its files", arguments: tlsTypes)
    func reapStaleStopsAbandonedProxies(_ type: DataServerType) async throws {
        let folder = try TemporaryFolder("dp")
        let sink = LogSink.memory()
        let abandoned = try makePlane(type, folder)
        let uid = newUID()
        let port = try freePort()
        let fresh = try makePlane(type, folder, sink: sink)
        try await withPlanes([abandoned, fresh], folders: [folder]) {
            try await abandoned.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(port)], targets: [loopback(9)], rateKbps: 0))
            guard let pid = await runningPID(abandoned, uid) else { return }
            #expect(await fresh.reapStale() == 1)
            await waitUntilGone(pid)
            expectGone(pid)
            #expect(folder.contents() == ["\(uid).log"])
            #expect(sink.recorded.contains { $0.contains("stale proxy stopped") && $0.contains("pid=\(pid)") })
            #expect(!sink.recorded.contains { $0.contains(uid) })
            let before = sink.recorded.count
            #expect(await fresh.reapStale() == 0)  // nothing left to do: a log alone is not a stale session
            #expect(sink.recorded.count == before)
            #expect(folder.contents() == ["\(uid).log"])
            await abandoned.stop(uid: uid)  // harmless afterwards
        }
    }

    @Test("reapStale never signals a pid that is not that session's proxy")
    func reapStaleLeavesUnrelatedProcessesAlone() async throws {
        let folder = try TemporaryFolder("dp")
        let plane = try makePlane(.haproxy, folder)
        let bystander = try await ChildProcess.spawn(executable: "/bin/sleep", arguments: ["30"], environment: [],
                                                     logPath: folder.file("sleep.out"))
        let uid = newUID()
        let other = newUID()
        try await withPlanes([plane], folders: [folder]) {
            // A recycled pid: the pid file names a live process that is not a proxy.
            try folder.write("\(uid).pid", "\(bystander.pid)\n")
            try folder.write("\(uid).conf", "global\n")
            try folder.write("\(uid).key", "secret\n")
            // A proxy-looking pid file whose process is gone.
            try folder.write("\(other).pid", "999999\n")
            try folder.write("\(other).pem", "x\n")
            #expect(await plane.reapStale() == 0)
            #expect(bystander.status == nil)
            #expect(kill(bystander.pid, 0) == 0)
            #expect(folder.contents() == ["sleep.out"])
            await bystander.terminate()
        }
    }

    @Test("the handle names its proxy: stopping it twice does no harm, and the uid can start again")
    func handles() async throws {
        let folder = try TemporaryFolder("dp")
        let owner = try makePlane(.haproxy, folder)
        let plane = owner.plane
        let uid = newUID()
        let spec = ProxySpec(uid: uid, role: .prod, listeners: [loopback(try freePort())], targets: [loopback(9)], rateKbps: 0)
        try await withPlanes([owner], folders: [folder]) {
            let proxy = try await plane.start(spec)
            guard let pid = proxy.pid else { Issue.record("no pid"); return }
            #expect(proxy.session == SessionID(uid))
            #expect(proxy.status == .running(pid: pid))
            #expect(proxy.logMark != nil)
            #expect(!proxy.wasStopped)
            await plane.stop(proxy)
            await plane.stop(proxy)
            expectGone(pid)
            #expect(proxy.wasStopped)  // its exit was asked for
            guard case .exited = proxy.status else { Issue.record("status \(String(describing: proxy.status))"); return }
            #expect(proxy.logMark == nil)
            #expect(await proxy.exit() != nil)
            #expect(folder.contents() == ["\(uid).log"])
            // The same uid can start again; its log is appended to.
            let again = try await plane.start(spec)
            #expect(again.pid != nil && again.pid != pid)
            await plane.stop(again)
        }
    }

    @Test("a start whose task is cancelled gives up: the proxy never outlives the release")
    func cancelledWhileStarting() async throws {
        let folder = try TemporaryFolder("dp")
        let owner = try makePlane(.haproxy, folder)
        let plane = owner.plane
        let uid = newUID()
        let spec = ProxySpec(uid: uid, role: .prod, listeners: [loopback(try freePort())], targets: [loopback(9)], rateKbps: 0)
        try await withPlanes([owner], folders: [folder]) {
            let start = Task { try await plane.start(spec) }
            // Cancel once the start is under way (its config is written), not after a guess.
            let deadline = ContinuousClock.now + .seconds(10)
            while !folder.exists("\(uid).conf"), ContinuousClock.now < deadline { await Task.yield() }
            #expect(folder.exists("\(uid).conf"))
            start.cancel()
            switch await start.result {
            case .failure(let error):
                #expect(error as? DataPlaneError == .stoppedWhileStarting(session: String(uid.prefix(8))))
            case .success(let proxy):
                Issue.record("the start finished although it was cancelled while starting")
                await plane.stop(proxy)
            }
            #expect(folder.contents().filter { !$0.hasSuffix(".log") }.isEmpty)
            #expect(processes(mentioning: folder.path).isEmpty)
        }
    }

    @Test("stopAll stops every session")
    func stopAllStopsEverything() async throws {
        let folder = try TemporaryFolder("dp")
        let plane = try makePlane(.nginx, folder)
        let uids = [newUID(), newUID(), newUID()]
        try await withPlanes([plane], folders: [folder]) {
            var pids: [Int32] = []
            for uid in uids {
                try await plane.start(ProxySpec(uid: uid, role: .cons, listeners: [loopback(try freePort())],
                                                targets: [loopback(9)], rateKbps: 0))
                if let pid = await runningPID(plane, uid) { pids.append(pid) }
            }
            #expect(Set(await plane.sessionUIDs) == Set(uids))
            await plane.stopAll()
            for pid in pids { expectGone(pid) }
            #expect(await plane.sessionUIDs.isEmpty)
            #expect(folder.contents().allSatisfy { $0.hasSuffix(".log") })
        }
    }

    @Test("Mock starts nothing and writes nothing")
    func mockStartsNothing() async throws {
        let folder = try TemporaryFolder("dp")
        let plane = try makePlane(.mock, folder)
        let uid = newUID()
        try await withPlanes([plane], folders: [folder]) {
            let proxy = try await plane.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(5100)], targets: [loopback(5001)], rateKbps: 10000))
            #expect(proxy.status == nil && proxy.pid == nil && proxy.logMark == nil)
            #expect(await proxy.exit() == nil)  // no process: nothing to wait for
            #expect(folder.contents().isEmpty)
            // The spec is still checked: a session without listeners is refused.
            await #expect(throws: DataPlaneError.self) {
                try await plane.start(ProxySpec(uid: newUID(), role: .prod, listeners: [], targets: [loopback(5001)], rateKbps: 0))
            }
            await plane.stop(uid: uid)
            #expect(await plane.sessionUIDs.isEmpty)
            #expect(folder.contents().isEmpty)
        }
    }

    @Test("haproxy and stunnel log that they do not apply the rate", arguments: [DataServerType.haproxy, .stunnel])
    func rateNotAppliedIsLogged(_ type: DataServerType) async throws {
        let folder = try TemporaryFolder("dp")
        let sink = LogSink.memory()
        let plane = try makePlane(type, folder, sink: sink)
        let uid = newUID()
        try await withPlanes([plane], folders: [folder]) {
            try await plane.start(ProxySpec(uid: uid, role: .cons, listeners: [loopback(try freePort())], targets: [loopback(9)],
                                            rateKbps: 10000))
            let lines = sink.recorded.filter { $0.contains("rate limit not applied") }
            #expect(lines.count == 1)
            #expect(lines.first?.contains("rate_kbps=10000") == true)
            await plane.stop(uid: uid)
        }
    }

    @Test("the proxy's own message is reported when it refuses its config")
    func configRejectionQuotesTheProxy() async throws {
        // A target name that cannot resolve passes our validation (it is a well-formed name) but
        // not HAProxy's parser: it exits at start, saying why (there is no separate `haproxy -c`).
        let folder = try TemporaryFolder("dp")
        let plane = try makePlane(.haproxy, folder)
        let uid = newUID()
        try await withPlanes([plane], folders: [folder]) {
            do {
                try await plane.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(try freePort())],
                                                targets: [ProxyEndpoint(host: "no-such-host.invalid", port: 5001)], rateKbps: 0))
                Issue.record("started with an unresolvable target")
            } catch let error as DataPlaneError {
                guard case .startFailed(.haproxy, _, let message) = error else {
                    Issue.record("unexpected error: \(error)")
                    return
                }
                #expect(message.contains("[ALERT]"), "\(message)")
                #expect(message.contains("no-such-host.invalid"), "\(message)")
                #expect(!error.description.contains(uid), "the full uid leaked: \(error)")
                #expect(error.description.contains("\(uid.prefix(8))*.conf"), "\(error)")
            }
            #expect(folder.contents() == ["\(uid).log"])
        }
    }
}

/// Construction-time checks: installation, plaintext support, the folder.
@Suite("DataPlane setup")
struct SetupTests {
    @Test func stunnelCannotDoPlaintext() throws {
        let folder = try TemporaryFolder("dp")
        defer { folder.remove() }
        #expect(throws: DataPlaneError.plaintextUnsupported(type: .stunnel)) {
            try DataPlane(type: .stunnel, folder: folder.path, dataPlaneTLS: false, logger: testLogger())
        }
        #expect(ErrorWording.text(DataPlaneError.plaintextUnsupported(type: .stunnel))
            == "Stunnel cannot forward plain TCP: use --type Haproxy or --type Nginx with --data-plane-tls=False")
        #expect(!DataPlaneError.plaintextUnsupported(type: .stunnel).description.contains("--type"))
        _ = try DataPlane(type: .haproxy, folder: folder.path, dataPlaneTLS: false, logger: testLogger())
        _ = try DataPlane(type: .nginx, folder: folder.path, dataPlaneTLS: false, logger: testLogger())
    }

    @Test(arguments: [DataServerType.haproxy, .nginx, .stunnel])
    func missingBinaryIsAClearError(_ type: DataServerType) throws {
        let folder = try TemporaryFolder("dp")
        defer { folder.remove() }
        do {
            _ = try DataPlane(type: type, folder: folder.path, dataPlaneTLS: true, logger: testLogger(), stopGrace: .seconds(2),
                              searchPath: ["/nonexistent"], readinessTimeout: .seconds(1), checkListenersBeforeLaunch: true)
            Issue.record("no error without the binary")
        } catch {
            let expected = switch type {
            case .haproxy: "haproxy is not installed: install it with 'sudo apt-get install haproxy'"
            case .nginx: "nginx is not installed: install it with 'sudo apt-get install nginx libnginx-mod-stream'"
            default: "stunnel is not installed: install it with 'sudo apt-get install stunnel4'"
            }
            // The first line is the one docs/troubleshooting.md quotes; the second names the type and
            // the directories searched.
            let lines = error.description.split(separator: "\n").map(String.init)
            #expect(lines.first == expected)
            #expect(lines.count == 2 && lines[1].hasPrefix("(the \(type.name) data plane runs \(type.binary ?? ""); searched /nonexistent: "),
                    "\(error.description)")
        }
    }

    @Test func mockNeedsNoBinary() throws {
        let folder = try TemporaryFolder("dp")
        defer { folder.remove() }
        _ = try DataPlane(type: .mock, folder: folder.path, dataPlaneTLS: false, logger: testLogger(), stopGrace: .seconds(2),
                          searchPath: [], readinessTimeout: .seconds(1), checkListenersBeforeLaunch: true)
    }

    @Test func folderIsCreated0700AndTightened() throws {
        let parent = try TemporaryFolder("dp")
        defer { parent.remove() }
        let nested = parent.file("a/b/.scistream")
        _ = try DataPlane(type: .mock, folder: nested, dataPlaneTLS: true, logger: testLogger())
        #expect(mode(nested) == 0o700)
        #expect(mode(parent.file("a")) == 0o700)

        let open = parent.file("open")
        mkdir(open, 0o755)
        chmod(open, 0o755)
        let sink = LogSink.memory()
        _ = try DataPlane(type: .mock, folder: open, dataPlaneTLS: true, logger: testLogger(sink))
        #expect(mode(open) == 0o700)
        #expect(sink.recorded.contains { $0.contains("session folder was open to other users") })
    }

    @Test func unsafeOrSharedFoldersAreRefused() throws {
        let parent = try TemporaryFolder("dp")
        defer { parent.remove() }
        for path in [parent.file("with space"), parent.file("semi;colon"), parent.file("new\nline"), "relative/path", parent.file("q\"")] {
            #expect(throws: DataPlaneError.self) { try DataPlane(type: .haproxy, folder: path, dataPlaneTLS: true, logger: testLogger()) }
        }
        #expect(!FileManager.default.fileExists(atPath: parent.file("with space")))
        let sticky = parent.file("shared")
        mkdir(sticky, 0o700)
        chmod(sticky, 0o1777)
        #expect(throws: DataPlaneError.self) { try DataPlane(type: .haproxy, folder: sticky, dataPlaneTLS: true, logger: testLogger()) }
        #expect(mode(sticky) == 0o1777)  // left as it was
        let file = parent.file("plain-file")
        try parent.write("plain-file", "x")
        #expect(throws: DataPlaneError.self) { try DataPlane(type: .haproxy, folder: file, dataPlaneTLS: true, logger: testLogger()) }
    }
}
