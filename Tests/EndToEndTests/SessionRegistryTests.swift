import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire
import SciStreamSystem
@testable import SciStreamDataPlane
@testable import SciStreamServer
import TestPorts

/// The session lifecycle in-process: one SessionRegistry and its DataPlane, driven as the control
/// server drives them. Proxies are real HAProxy processes, started through a wrapper that can hold
/// the start for a while (a proxy that is slow to listen).
@Suite(.serialized) struct SessionRegistryTests {
    let caller = Caller.anonymous("127.0.0.1")
    let folder = Harness.temporaryFolder("registry")

    /// A folder holding `haproxy`: a wrapper that waits `delay` seconds, then runs the real one.
    func slowProxyFolder(delay: Double) throws -> String {
        let bin = folder.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        let script = bin.appendingPathComponent("haproxy")
        try "#!/bin/sh\nsleep \(delay)\nexec /usr/sbin/haproxy \"$@\"\n".write(to: script, atomically: true, encoding: .utf8)
        chmod(script.path, 0o755)
        chmod(bin.path, 0o755)
        return bin.path
    }

    func make(_ type: DataServerType = .mock, ports: PortBlock, helloTimeout: Duration = .seconds(5), proxyDelay: Double = 0,
              sink: LogSink = .standardError) throws -> (SessionRegistry, DataPlane) {
        var config = ServerConfiguration()
        config.portRange = try PortRange(lower: ports.lower, upper: ports.upper)
        config.listenerIP = "127.0.0.1"
        config.helloTimeout = helloTimeout
        config.maxPortsPerClient = ports.count
        config.configFolder = folder.appendingPathComponent("sessions").path
        let logger = Logger(label: "test", level: .debug, sink: sink)
        let searchPath = type == .mock ? [] : [try slowProxyFolder(delay: proxyDelay)]
        let dataPlane = try DataPlane(type: type, folder: config.configFolder, dataPlaneTLS: true, logger: logger, stopGrace: .seconds(2),
                                      searchPath: searchPath, readinessTimeout: .seconds(10), checkListenersBeforeLaunch: true)
        return (SessionRegistry(config: config, dataPlane: dataPlane, logger: logger), dataPlane)
    }

    /// Request and hello, as s2uc sends them (the hello on its own connection, while the request waits).
    func requestAndHello(_ registry: SessionRegistry, uid: String, numConn: UInt32 = 1, targets: [String] = ["127.0.0.1:5001"]) async throws -> RequestReply {
        let caller = self.caller
        let request = Task { try await registry.request(Request(token: "", uid: .checked(uid), role: .prod, numConn: numConn, rate: 0, listenPorts: []), uid: SessionID(uid)!, caller: caller) }
        try await registry.hello(Hello(token: "", uid: .checked(uid), role: .prod, prodListeners: targets), uid: SessionID(uid)!, caller: caller, checked: .success(targets))
        return try await request.value
    }

    func update(_ registry: SessionRegistry, uid: String, target: String = "127.0.0.1:5001") async throws -> [Endpoint] {
        try await registry.update(Update(token: "", uid: .checked(uid), role: .prod, remoteListeners: [target]), uid: SessionID(uid)!, targets: [try Endpoint.parse(target)], caller: caller)
    }

    /// The proxies running with a config of this test's session folder (other suites' proxies may be
    /// children of this process too).
    func proxiesOfThisFolder() -> [Int32] {
        childPIDs(of: getpid()).filter { pid in
            let commandLine = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            return commandLine.contains(folder.path)
        }
    }

    /// Whether every port of `ports` can be handed out again (one session asking for all of them).
    func allPortsFree(_ registry: SessionRegistry, _ ports: PortBlock) async -> Bool {
        let reply = try? await requestAndHello(registry, uid: SessionID.random(), numConn: UInt32(ports.count))
        return reply?.status.code == .ok && reply?.listeners.count == ports.count
    }

    @Test func aHelloThatOvertakesItsRequestWaitsForIt() async throws {
        let ports = try PortBlock.reserve(4)
        let (registry, _) = try make(ports: ports)
        let uid = SessionID.random()
        let caller = self.caller
        let hello = Task { try await registry.hello(Hello(token: "", uid: .checked(uid), role: .prod, prodListeners: ["127.0.0.1:5001"]), uid: SessionID(uid)!, caller: caller, checked: .success(["127.0.0.1:5001"])) }
        try await waitUntil("the hello waits for its request", seconds: 10) { await registry.isHelloWaiting(for: SessionID(uid)!) }
        let reply = try await registry.request(Request(token: "", uid: .checked(uid), role: .prod, numConn: 2, rate: 0, listenPorts: []), uid: SessionID(uid)!, caller: caller)
        try await hello.value
        #expect(reply.status.code == .ok && reply.listeners.count == 2 && reply.prodListeners == ["127.0.0.1:5001"])
    }

    @Test func aRequestWithoutHelloExpiresAndItsPortsReturn() async throws {
        let ports = try PortBlock.reserve(3)
        let (registry, _) = try make(ports: ports, helloTimeout: .milliseconds(200))
        let uid = SessionID.random()
        await #expect(throws: StatusError.self) {
            _ = try await registry.request(Request(token: "", uid: .checked(uid), role: .prod, numConn: 3, rate: 0, listenPorts: []), uid: SessionID(uid)!, caller: caller)
        }
        #expect(await registry.snapshot().isEmpty)
        #expect(await allPortsFree(registry, ports))
    }

    @Test func anUpdateDuringShutdownStartsNothing() async throws {
        let ports = try PortBlock.reserve(2)
        let (registry, _) = try make(.haproxy, ports: ports)
        let uid = SessionID.random()
        _ = try await requestAndHello(registry, uid: uid)
        #expect(await registry.shutdown() == 1)
        do {
            _ = try await update(registry, uid: uid)
            Issue.record("an update after shutdown succeeded")
        } catch {
            #expect((error as? StatusError)?.status.code == .unavailable && (error as? StatusError)?.status.message == "s2cs is shutting down", "\(error)")
        }
        let ours = proxiesOfThisFolder()
        #expect(ours.isEmpty, "proxies started after shutdown: \(ours)")
        #expect(await registry.snapshot().isEmpty)
    }

    @Test func shutdownEndsAStartInProgressAndLeavesNoProxy() async throws {
        let ports = try PortBlock.reserve(2)
        let (registry, _) = try make(.haproxy, ports: ports, proxyDelay: 1.5)
        let uid = SessionID.random()
        _ = try await requestAndHello(registry, uid: uid)
        let starting = Task { try await update(registry, uid: uid) }
        // The proxy is starting (held 1.5 s by its wrapper): wait for that, not for a guessed time.
        try await waitUntil("the session is starting", seconds: 10) { await registry.snapshot().first?.state == .starting }
        #expect(await registry.shutdown() == 1)
        await #expect(throws: StatusError.self) { _ = try await starting.value }
        #expect(proxiesOfThisFolder().isEmpty)
        #expect(await registry.snapshot().isEmpty)
        #expect(noProxyFiles(uid))
    }

    @Test func aReleaseWhileTheProxyStartsStopsItThenFreesThePorts() async throws {
        let ports = try PortBlock.reserve(2)
        let (registry, _) = try make(.haproxy, ports: ports, proxyDelay: 1.5)
        let uid = SessionID.random()
        _ = try await requestAndHello(registry, uid: uid, numConn: 2)
        let starting = Task { try await update(registry, uid: uid) }
        try await waitUntil("the session is starting", seconds: 10) { await registry.snapshot().first?.state == .starting }
        let note = try await registry.release(SessionID(uid)!, caller: caller)
        #expect(note == nil)
        do {
            _ = try await starting.value
            Issue.record("the update succeeded although the session was released")
        } catch {
            #expect((error as? StatusError)?.status.message.contains("was released while its proxy was starting") == true, "\(error)")
        }
        #expect(proxiesOfThisFolder().isEmpty)
        #expect(noProxyFiles(uid))
        #expect(await allPortsFree(registry, ports))
    }

    @Test func aProxyThatDiesIsReportedAtReleaseAndItsPortsReturn() async throws {
        let ports = try PortBlock.reserve(2)
        let sink = LogSink.memory()
        let (registry, _) = try make(.haproxy, ports: ports, sink: sink)
        let uid = SessionID.random()
        let id = try SessionID(validating: uid)
        _ = try await requestAndHello(registry, uid: uid, numConn: 2)
        let listeners = try await update(registry, uid: uid)
        #expect(listeners.count == 2)
        // The session owns its proxy's handle: that is where its state is read.
        guard case .running(let pid) = await registry.snapshot().first(where: { $0.uid == id })?.proxy?.status else {
            Issue.record("not running"); return
        }
        kill(pid, SIGKILL)
        // The registry learns of the exit by itself: the session shows how its proxy ended, and the
        // exit is counted and logged once.
        try await waitUntil("the registry noticed the exit", seconds: 10) {
            await registry.snapshot().first { $0.uid == id }?.proxyExit != nil
        }
        #expect(await registry.snapshot().first { $0.uid == id }?.proxyExit == "killed by SIGKILL")
        #expect(await registry.unexpectedExits == 1)
        let lines = sink.recorded.filter { $0.contains("proxy exited unexpectedly") }
        #expect(lines.count == 1)
        #expect(lines.first?.contains("session=\(id.prefix)") == true)
        #expect(lines.first?.contains("pid=\(pid)") == true)
        #expect(lines.first?.contains("status=\"killed by SIGKILL\"") == true)
        let note = try await registry.release(SessionID(uid)!, caller: caller)
        #expect(note?.contains("exited unexpectedly") == true, "\(String(describing: note))")
        #expect(await allPortsFree(registry, ports))
    }

    /// A session whose proxy fails to start is failed, not gone; nobody releases it, and after
    /// --hello-timeout (like a pending one) it is released: gone from the list, its ports free.
    @Test func aFailedSessionNobodyReleasesIsReleasedAfterTheHelloTimeout() async throws {
        let ports = try PortBlock.reserve(2)
        let (registry, _) = try make(.haproxy, ports: ports, helloTimeout: .milliseconds(500))
        // The "proxy" exits at once with an error: the start fails.
        try "#!/bin/sh\necho 'cannot start' >&2\nexit 1\n".write(to: folder.appendingPathComponent("bin/haproxy"), atomically: true, encoding: .utf8)
        chmod(folder.appendingPathComponent("bin/haproxy").path, 0o755)
        let uid = SessionID.random()
        _ = try await requestAndHello(registry, uid: uid, numConn: 2)
        await #expect(throws: StatusError.self) { _ = try await update(registry, uid: uid) }
        let failed = await registry.snapshot().first { $0.uid == SessionID(uid)! }
        #expect(failed.map { if case .failed = $0.state { true } else { false } } == true, "\(String(describing: failed))")
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, await !registry.snapshot().isEmpty {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(await registry.snapshot().isEmpty)
        #expect(await allPortsFree(registry, ports))
    }

    /// No config, key, certificate or pid file left for `uid` (its log may stay).
    func noProxyFiles(_ uid: String) -> Bool {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("sessions").path)) ?? []
        return !files.contains { $0.hasPrefix(uid) && !$0.hasSuffix(".log") }
    }
}
