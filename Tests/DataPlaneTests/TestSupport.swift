#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import Testing
import SciStreamSystem
import SciStreamTLS
import TestPorts

/// A temporary folder, removed by `remove()`.
struct TemporaryFolder {
    let path: String

    init(_ label: String = "dp") throws {
        var template = Array("/tmp/scistream-\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }  // safe: non-empty array
        guard made != nil else { throw Errno.current }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: file(name)))
    }

    func read(_ name: String) -> String? { try? String(contentsOfFile: file(name), encoding: .utf8) }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: file(name)) }

    func contents() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs a program to completion, returning its exit status and combined output. Past `timeout` it
/// is stopped (SIGTERM to its group, SIGKILL after 1 s) and reaped, and the test fails saying so.
func run(_ executable: String, _ arguments: [String], in folder: TemporaryFolder, timeout: Duration = .seconds(30),
         sourceLocation: SourceLocation = #_sourceLocation) async throws -> (TerminationStatus, String) {
    let log = folder.file("run-\(UInt32.random(in: 0...UInt32.max)).out")
    let child = try await ChildProcess.spawn(executable: executable, arguments: arguments,
                                             environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], logPath: log)
    var status = await child.wait(timeout: timeout)
    if status == nil {
        status = await child.terminate(grace: .seconds(1))
        Issue.record("timed out after \(timeout), stopped: \(([executable] + arguments).joined(separator: " "))",
                     sourceLocation: sourceLocation)
    }
    let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    unlink(log)
    return (status ?? .exited(code: -1), output)
}

/// Asserts that `pid` no longer exists: kill(pid, 0) fails with ESRCH.
func expectGone(_ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation) {
    let result = kill(pid, 0)
    let error = errno
    #expect(result == -1 && error == ESRCH, "pid \(pid) still exists", sourceLocation: sourceLocation)
}

import COpenSSL
import Synchronization
@testable import SciStreamDataPlane


/// A port for a proxy's listener, free on every address, from this run's reserved blocks (see
/// `PortBlock`: never in the kernel's ephemeral range, never shared with another test run).
func freePort() throws -> UInt16 { try PortBlock.port() }

func loopback(_ port: UInt16) -> ProxyEndpoint { ProxyEndpoint(host: "127.0.0.1", port: port) }

func newUID() -> String { UUID().uuidString.lowercased() }

// Tests name a session by its text (file names are built from it); the data plane takes the typed
// id. Each test uid comes from `newUID()` or a literal canonical UUID, so the unwrap below holds.
extension ProxySpec {
    init(uid: String, role: ProxyRole, listeners: [ProxyEndpoint], targets: [ProxyEndpoint], rateKbps: Int,
         allowedSources: [SourceBlock] = []) {
        self.init(uid: SessionID(uid)!, role: role, listeners: listeners, targets: targets, rateKbps: rateKbps,
                  allowedSources: allowedSources)
    }
}

/// What the registry is in s2cs, for the data plane's tests: the owner of the proxies a data plane
/// started (the data plane keeps none), by uid, so that tests name sessions as before and
/// `withPlanes` stops every proxy a test left running.
actor ProxyOwner {
    nonisolated let plane: DataPlane
    private var proxies: [SessionID: RunningProxy] = [:]

    init(_ plane: DataPlane) { self.plane = plane }

    nonisolated var folder: String { plane.folder }

    /// Starts `spec`'s proxy and keeps its handle.
    @discardableResult
    func start(_ spec: ProxySpec) async throws(DataPlaneError) -> RunningProxy {
        let proxy = try await plane.start(spec)
        proxies[spec.uid] = proxy
        return proxy
    }

    /// Stops the proxy of `uid`, if this owner holds one.
    func stop(uid: String) async {
        guard let session = SessionID(uid) else { Issue.record("not a uid: \(uid)"); return }
        guard let proxy = proxies.removeValue(forKey: session) else { return }
        await plane.stop(proxy)
    }

    /// The status of `uid`'s proxy (nil: none held, or Mock).
    func status(uid: String) -> ProxyStatus? {
        guard let session = SessionID(uid) else { Issue.record("not a uid: \(uid)"); return nil }
        return proxies[session]?.status
    }

    /// The handle of `uid`'s proxy, if this owner holds one.
    func proxy(uid: String) -> RunningProxy? { SessionID(uid).flatMap { proxies[$0] } }

    var sessionUIDs: [String] { proxies.keys.map(\.text) }

    func stopAll() async {
        let all = proxies.values
        proxies = [:]
        await withTaskGroup(of: Void.self) { group in
            for proxy in all { group.addTask { await self.plane.stop(proxy) } }
        }
    }

    /// `DataPlane.reapStale`, keeping what this owner holds (as s2cs keeps the sessions it took over).
    func reapStale() async -> Int { await plane.reapStale(keeping: Set(proxies.keys)) }
}

func newSessionID() -> SessionID { SessionID(newUID())! }  // safe: UUID().uuidString is canonical

func testLogger(_ sink: LogSink = .memory()) -> Logger { Logger(label: "dataplane-test", level: .debug, sink: sink) }

/// The producer application: accepts connections on loopback, reads each to EOF, and records the
/// SHA-256 and length of what it received.
final class ProducerApp: Sendable {
    struct Received: Sendable, Equatable {
        let digest: [UInt8]
        let count: Int
    }

    private struct State {
        var connections = 0
        var bytes = 0
        var finished: [Received] = []
        var tasks: [Task<Void, Never>] = []
    }

    let port: UInt16
    private let listener: Socket
    private let state = Mutex(State())
    private let acceptTask: Mutex<Task<Void, Never>?> = Mutex(nil)

    init() throws {
        listener = try Socket.listen(on: try SocketAddress.resolve(host: "127.0.0.1", port: 0))
        port = listener.localAddress!.port  // safe: bound
        let task = Task { [self] in await self.acceptLoop() }
        acceptTask.withLock { $0 = task }
    }

    private func acceptLoop() async {
        while !Task.isCancelled {
            guard let connection = try? await listener.accept() else { return }
            state.withLock { $0.connections += 1 }
            let reader = Task { [self] in await self.readAll(connection) }
            state.withLock { $0.tasks.append(reader) }
        }
    }

    private func readAll(_ connection: Socket) async {
        let digest = SHA256Digest()
        var count = 0
        while true {
            guard let chunk = try? await connection.read(max: 1 << 18), !chunk.isEmpty else { break }
            digest.update(chunk)
            count += chunk.count
            state.withLock { $0.bytes += chunk.count }
        }
        connection.close()
        let received = Received(digest: digest.finish(), count: count)
        state.withLock { $0.finished.append(received) }
    }

    var connections: Int { state.withLock { $0.connections } }
    var bytes: Int { state.withLock { $0.bytes } }
    var finished: [Received] { state.withLock { $0.finished } }

    /// Waits until `count` connections have finished (EOF), or the timeout passes.
    func waitForFinished(_ count: Int, timeout: Duration = .seconds(60)) async -> [Received] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let done = finished
            if done.count >= count { return done }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return finished
    }

    func stop() {
        acceptTask.withLock { $0?.cancel() }
        let tasks = state.withLock { $0.tasks }
        for task in tasks { task.cancel() }
        listener.close()
    }
}

/// Connects to `port`, sends `count` random bytes, half-closes, and returns what was sent.
func sendRandom(to port: UInt16, host: String = "127.0.0.1", count: Int) async throws -> ProducerApp.Received {
    let socket = try await Socket.connect(to: try SocketAddress.resolve(host: host, port: port),
                                          deadline: .now + .seconds(10))
    defer { socket.close() }
    let digest = SHA256Digest()
    var sent = 0
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while sent < count {
        let size = min(chunk.count, count - sent)
        if size < chunk.count { chunk = [UInt8](repeating: 0, count: size) }
        chunk.withUnsafeMutableBytes { _ = RAND_bytes($0.baseAddress, Int32($0.count)) }
        digest.update(chunk)
        try await socket.writeAll(chunk, deadline: .now + .seconds(60))
        sent += size
    }
    _ = shutdown(socket.fd, Int32(SHUT_WR))
    // Wait for the proxy to close its side too (it does once the producer got EOF), bounded.
    _ = try? await socket.read(max: 1, deadline: .now + .seconds(30))
    return ProducerApp.Received(digest: digest.finish(), count: sent)
}

/// What a TLS client got when it tried the PROD listener.
struct TLSAttempt: Sendable, CustomStringConvertible {
    var handshake: String
    var afterWrite: String
    var description: String { "handshake: \(handshake); after write: \(afterWrite)" }
}

/// A TLS client (OpenSSL, blocking, on its own thread) that connects to 127.0.0.1:port, presents
/// `certificatePEM`/`keyPEM` if given, does not verify the server, writes 4 KiB, then reads.
/// `maxVersion` (e.g. `TLS1_2_VERSION`) caps the protocol it offers; `timeoutSeconds` bounds each
/// read and write, the handshake's included.
func tlsAttempt(port: UInt16, certificatePEM: String?, keyPEM: String?, readAfterWrite: Bool = true,
                maxVersion: Int32? = nil, timeoutSeconds: Int = 3) async -> TLSAttempt {
    await withCheckedContinuation { continuation in
        let thread = Thread {
            continuation.resume(returning: blockingTLSAttempt(port: port, certificatePEM: certificatePEM, keyPEM: keyPEM,
                                                              readAfterWrite: readAfterWrite, maxVersion: maxVersion,
                                                              timeoutSeconds: timeoutSeconds))
        }
        thread.start()
    }
}

/// A TLS connection to a PROD listener with the session's certificate, held open until `close()`
/// (blocking OpenSSL on a thread of its own).
final class HeldTLSConnection: @unchecked Sendable {  // fd and ssl: set once in connect, then used by close() only
    private var fd: Int32 = -1
    private var ssl: OpaquePointer?
    private var context: OpaquePointer?
    /// "completed", or why the handshake failed.
    private(set) var handshake = "not attempted"

    static func connect(port: UInt16, certificatePEM: String, keyPEM: String, timeoutSeconds: Int = 3) async -> HeldTLSConnection {
        let held = HeldTLSConnection()
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                held.open(port: port, certificatePEM: certificatePEM, keyPEM: keyPEM, timeoutSeconds: timeoutSeconds)
                continuation.resume()
            }
            thread.start()
        }
        return held
    }

    private func open(port: UInt16, certificatePEM: String, keyPEM: String, timeoutSeconds: Int) {
        guard let context = clientContext(certificatePEM: certificatePEM, keyPEM: keyPEM, maxVersion: nil) else {
            handshake = "cannot make a context: \(drainErrors())"
            return
        }
        self.context = context
        fd = connectedSocket(port: port, timeoutSeconds: timeoutSeconds)
        guard fd >= 0, let ssl = SSL_new(context) else {
            handshake = "connect failed"
            return
        }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        let result = SSL_connect(ssl)
        handshake = result == 1 ? "completed" : "failed (\(SSL_get_error(ssl, result))): \(drainErrors())"
        if result == 1 {
            // TLS 1.3: the server's verdict on our certificate comes after our Finished; write a byte
            // and wait briefly for an alert, so that "completed" means the server took us.
            var byte: UInt8 = 0x41
            if SSL_write(ssl, &byte, 1) != 1 { handshake = "refused after the handshake: \(drainErrors())" }
        }
    }

    func close() {
        if let ssl { SSL_free(ssl) }
        if fd >= 0 { Glibc.close(fd) }
        if let context { SSL_CTX_free(context) }
        ssl = nil
        fd = -1
        context = nil
    }
}

/// A client SSL_CTX that verifies nothing and presents the given certificate, if any.
private func clientContext(certificatePEM: String?, keyPEM: String?, maxVersion: Int32?) -> OpaquePointer? {
    guard let context = SSL_CTX_new(TLS_client_method()) else { return nil }
    SSL_CTX_set_verify(context, SSL_VERIFY_NONE, nil)
    if let maxVersion { _ = SSL_CTX_ctrl(context, SSL_CTRL_SET_MAX_PROTO_VERSION, Int(maxVersion), nil) }
    if let certificatePEM, let keyPEM {
        let certificate = certificatePEM.withCString { text -> OpaquePointer? in
            let bio = BIO_new_mem_buf(text, -1)
            defer { BIO_free(bio) }
            return PEM_read_bio_X509(bio, nil, nil, nil)
        }
        let key = keyPEM.withCString { text -> OpaquePointer? in
            let bio = BIO_new_mem_buf(text, -1)
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        defer { X509_free(certificate); EVP_PKEY_free(key) }
        guard SSL_CTX_use_certificate(context, certificate) == 1, SSL_CTX_use_PrivateKey(context, key) == 1 else {
            SSL_CTX_free(context)
            return nil
        }
    }
    return context
}

/// A blocking TCP socket connected to 127.0.0.1:port with send and receive timeouts; -1 on failure.
private func connectedSocket(port: UInt16, timeoutSeconds: Int) -> Int32 {
    // A proxy may close while the client writes (a refused certificate is told after the handshake):
    // EPIPE, not a SIGPIPE that ends the test process.
    signal(SIGPIPE, SIG_IGN)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return -1 }
    var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(fd)
        return -1
    }
    return fd
}

private func blockingTLSAttempt(port: UInt16, certificatePEM: String?, keyPEM: String?, readAfterWrite: Bool,
                                maxVersion: Int32?, timeoutSeconds: Int) -> TLSAttempt {
    var result = TLSAttempt(handshake: "not attempted", afterWrite: "not attempted")
    guard let context = clientContext(certificatePEM: certificatePEM, keyPEM: keyPEM, maxVersion: maxVersion) else {
        result.handshake = "cannot load the client certificate: \(drainErrors())"
        return result
    }
    defer { SSL_CTX_free(context) }
    let fd = connectedSocket(port: port, timeoutSeconds: timeoutSeconds)
    guard fd >= 0 else {
        result.handshake = "connect failed: \(Errno.current)"
        return result
    }
    defer { close(fd) }
    guard let ssl = SSL_new(context) else { return result }
    defer { SSL_free(ssl) }
    SSL_set_fd(ssl, fd)
    let handshake = SSL_connect(ssl)
    if handshake != 1 {
        result.handshake = "failed (\(SSL_get_error(ssl, handshake))): \(drainErrors())"
        return result
    }
    result.handshake = "completed"
    let payload = [UInt8](repeating: 0x41, count: 4096)
    let written = payload.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
    if written <= 0 {
        result.afterWrite = "write failed: \(drainErrors())"
        return result
    }
    guard readAfterWrite else {
        // Close cleanly (close_notify, then wait for the proxy to close): a bare close() with the
        // server's unread session tickets in the buffer would send a reset and lose the data.
        _ = SSL_shutdown(ssl)
        var sink = [UInt8](repeating: 0, count: 1024)
        while sink.withUnsafeMutableBytes({ SSL_read(ssl, $0.baseAddress, Int32($0.count)) }) > 0 {}
        result.afterWrite = "wrote \(written) bytes and closed"
        return result
    }
    var buffer = [UInt8](repeating: 0, count: 1024)
    let read = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
    if read > 0 {
        result.afterWrite = "read \(read) bytes"
    } else {
        let error = SSL_get_error(ssl, read)
        result.afterWrite = error == SSL_ERROR_ZERO_RETURN ? "closed" : "refused (\(error)): \(drainErrors())"
    }
    return result
}

private func drainErrors() -> String {
    var messages: [String] = []
    while case let code = ERR_get_error(), code != 0 {
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        messages.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return messages.joined(separator: "; ")
}

/// The pids of processes whose command line mentions `fragment` (such as a test's folder).
func processes(mentioning fragment: String) -> [Int32] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return names.compactMap(Int32.init).filter { pid in
        guard let info = ProcessReaper.stat(pid: pid), info.state != "Z" || true,
              let argv = ProcessReaper.commandLine(pid: pid) else { return false }
        return argv.joined(separator: " ").contains(fragment)
    }
}

/// A data plane for tests, with the internal knobs reachable.
func makePlane(_ type: DataServerType, _ folder: TemporaryFolder, tls: Bool = true, sink: LogSink = .memory(),
               checkListeners: Bool = true, maxConnections: Int = SessionLimits.defaultMaxConnections,
               logLimit: Int = SessionLog.defaultLimit) throws -> ProxyOwner {
    ProxyOwner(try DataPlane(type: type, folder: folder.path, dataPlaneTLS: tls, logger: testLogger(sink), stopGrace: .seconds(2),
                  searchPath: DataPlane.defaultSearchPath(path: ProcessInfo.processInfo.environment["PATH"]), readinessTimeout: .seconds(10),
                  checkListenersBeforeLaunch: checkListeners, maxConnections: maxConnections, logLimit: logLimit))
}

/// Runs `body`; then, even if it threw, stops every proxy the owners hold, checks that no process still
/// mentions the folders (no proxy left behind), and removes them.
func withPlanes(_ planes: [ProxyOwner], folders: [TemporaryFolder], producer: ProducerApp? = nil,
                sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async throws {
    var failure: (any Error)? = nil
    do {
        try await body()
    } catch {
        failure = error
    }
    for plane in planes { await plane.stopAll() }
    producer?.stop()
    for folder in folders {
        let left = processes(mentioning: folder.path)
        #expect(left.isEmpty, "processes left behind: \(left)", sourceLocation: sourceLocation)
        for pid in left { kill(pid, SIGKILL) }
        folder.remove()
    }
    if let failure { throw failure }
}

/// A producer-side and a consumer-side data plane of `type`, each in a folder of its own, and a
/// `ProducerApp`: `body` gets (prod, cons, producer, prodFolder, consFolder); afterwards, as in
/// `withPlanes`, everything is stopped and no proxy may be left.
func withPlanePair(_ type: DataServerType, tls: Bool = true, sink: LogSink = .memory(), sourceLocation: SourceLocation = #_sourceLocation,
                   _ body: (ProxyOwner, ProxyOwner, ProducerApp, TemporaryFolder, TemporaryFolder) async throws -> Void) async throws {
    let prodFolder = try TemporaryFolder("dp-prod")
    let consFolder = try TemporaryFolder("dp-cons")
    let prod = try makePlane(type, prodFolder, tls: tls, sink: sink)
    let cons = try makePlane(type, consFolder, tls: tls, sink: sink)
    let producer = try ProducerApp()
    try await withPlanes([prod, cons], folders: [prodFolder, consFolder], producer: producer, sourceLocation: sourceLocation) {
        try await body(prod, cons, producer, prodFolder, consFolder)
    }
}

/// One PROD session of `type` on a free loopback port, forwarding to a fresh `ProducerApp`.
struct ProdSession {
    let plane: ProxyOwner
    let folder: TemporaryFolder
    let producer: ProducerApp
    let uid: String
    let port: UInt16
    let keys: SessionKeys

    /// Waits (bounded) until the producer has received `count` bytes; returns what it has.
    @discardableResult
    func waitForBytes(_ count: Int, timeout: Duration = .seconds(5)) async -> Int {
        let deadline = ContinuousClock.now + timeout
        while producer.bytes < count && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        return producer.bytes
    }
}

/// Starts a `ProdSession` with a plane of the given limits, runs `body`, then stops and checks
/// everything as `withPlanes` does.
func withProdSession(_ type: DataServerType, maxConnections: Int = SessionLimits.defaultMaxConnections,
                     logLimit: Int = SessionLog.defaultLimit, sourceLocation: SourceLocation = #_sourceLocation,
                     _ body: (ProdSession) async throws -> Void) async throws {
    let folder = try TemporaryFolder("dp-prod")
    let plane = try makePlane(type, folder, maxConnections: maxConnections, logLimit: logLimit)
    let producer = try ProducerApp()
    let uid = newUID()
    let port = try freePort()
    try await withPlanes([plane], folders: [folder], producer: producer, sourceLocation: sourceLocation) {
        try await plane.start(ProxySpec(uid: uid, role: .prod, listeners: [loopback(port)],
                                        targets: [loopback(producer.port)], rateKbps: 0))
        try await body(ProdSession(plane: plane, folder: folder, producer: producer, uid: uid, port: port,
                                   keys: try SessionKeys.derive(#require(SessionID(uid)))))
    }
}

/// The running proxy's pid, or nil (recording an issue).
func runningPID(_ plane: ProxyOwner, _ uid: String, sourceLocation: SourceLocation = #_sourceLocation) async -> Int32? {
    let status = await plane.status(uid: uid)
    guard case .running(let pid) = status else {
        Issue.record("expected a running proxy, got \(String(describing: status))", sourceLocation: sourceLocation)
        return nil
    }
    return pid
}

/// Polls until `pid` is gone (its owner's watcher reaps it asynchronously), bounded.
func waitUntilGone(_ pid: Int32, timeout: Duration = .seconds(10)) async {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if kill(pid, 0) == -1 && errno == ESRCH { return }
        try? await Task.sleep(for: .milliseconds(10))
    }
}

/// File mode bits (permissions) of a path.
func mode(_ path: String) -> UInt32? {
    var info = stat()
    return stat(path, &info) == 0 ? UInt32(info.st_mode & 0o7777) : nil
}

/// The name the proxy is launched with: a link to `<uid>.conf` whose name does not reveal the uid.
func launchName(_ uid: String) -> String {
    guard let session = SessionID(uid) else { return "" }
    return SessionFiles(folder: "", session: session).label + ".conf"
}
