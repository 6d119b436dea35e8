#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import Synchronization
import SciStreamSystem

/// The data plane of one s2cs: it starts a session's proxy (HAProxy, nginx or stunnel) from a
/// generated config and hands back a `RunningProxy`, and stops the proxy a `RunningProxy` names. It
/// holds no session: the registry's session owns its proxy's handle, and shutdown, restart and
/// supervision go through the registry.
///
/// Files per session, in `folder` (0700): `<uid>.conf`, `<uid>.pem` (certificate + private key),
/// `<uid>.key`, `<uid>.pid` (all 0600, removed by `stop`), and `<uid>.log` (0600, the proxy's
/// stdout and stderr captured by s2cs and bounded in size (`SessionLog`), KEPT after `stop` for
/// troubleshooting, appended to if the uid returns, and pruned after `SessionLog.retention`).
public final class DataPlane: Sendable {
    public let type: DataServerType
    public let folder: String
    public let dataPlaneTLS: Bool
    /// Per-connection buffer size written into HAProxy and nginx configs.
    public let buffers: ProxyBuffers
    let logger: Logger
    let stopGrace: Duration
    let readinessTimeout: Duration
    /// The proxy's executable, found once at construction (nil for Mock).
    public let executable: String?
    /// Connections one session's proxy holds at once (`SessionLimits.defaultMaxConnections`).
    let maxConnections: Int
    /// The size at which a session's log is rotated (`SessionLog.defaultLimit`).
    let logLimit: Int
    /// Tests turn this off to see the proxy's own bind error instead of ours.
    let checkListenersBeforeLaunch: Bool
    /// Who proxies drop to after start-up (s2cs runs as root); nil: they run as s2cs does.
    public let runAs: ProxyIdentity?
    /// Why this data plane cannot limit who connects to its listeners, or nil when it can. Only
    /// Stunnel depends on this process: it has no source ACL, so s2cs filters its listening sockets,
    /// which the kernel allows only with CAP_NET_ADMIN (`SourceFilter.refusal`).
    public let sourceFenceRefusal: String?
    /// Whether proxies are configured to count traffic (TrafficMeter reads it): s2cs's
    /// `--traffic-counting` (default True); off unless asked for.
    public let countsTraffic: Bool

    /// Finds the proxy's binary, once, in the trusted directories of PATH and the standard ones
    /// (`defaultSearchPath`), and checks that root owns it (and, for stunnel, that it is not asked for
    /// plain TCP); creates `folder` with mode 0700 (tightening an existing one of ours), and makes
    /// this process a child subreaper so that a proxy's orphaned workers can be reaped.
    /// `path` is the PATH of the environment s2cs was started with (nil: the standard directories only).
    public convenience init(type: DataServerType, folder: String, dataPlaneTLS: Bool, buffers: ProxyBuffers = .standard, logger: Logger,
                            stopGrace: Duration = .seconds(2), runAs: ProxyIdentity? = nil, path: String? = nil,
                            countsTraffic: Bool = false) throws(DataPlaneError) {
        try self.init(type: type, folder: folder, dataPlaneTLS: dataPlaneTLS, buffers: buffers, logger: logger, stopGrace: stopGrace,
                      searchPath: DataPlane.defaultSearchPath(path: path), requireTrustedBinary: true, readinessTimeout: .seconds(10),
                      checkListenersBeforeLaunch: true, runAs: runAs, countsTraffic: countsTraffic)
    }

    /// Tests give their own `searchPath` (taken as it is, unless `requireTrustedBinary`), and
    /// smaller limits.
    init(type: DataServerType, folder: String, dataPlaneTLS: Bool, buffers: ProxyBuffers = .standard, logger: Logger, stopGrace: Duration,
         searchPath: [String], requireTrustedBinary: Bool = false, readinessTimeout: Duration,
         checkListenersBeforeLaunch: Bool, maxConnections: Int = SessionLimits.defaultMaxConnections,
         logLimit: Int = SessionLog.defaultLimit, runAs: ProxyIdentity? = nil, countsTraffic: Bool = false) throws(DataPlaneError) {
        self.runAs = runAs
        self.type = type
        self.folder = folder
        self.dataPlaneTLS = dataPlaneTLS
        self.buffers = buffers
        self.logger = logger
        self.stopGrace = stopGrace
        self.readinessTimeout = readinessTimeout
        self.checkListenersBeforeLaunch = checkListenersBeforeLaunch
        self.maxConnections = maxConnections
        self.logLimit = logLimit
        self.countsTraffic = countsTraffic
        self.sourceFenceRefusal = type == .stunnel ? SourceFilter.refusal().map { "the kernel refuses socket filters to this process (SO_ATTACH_FILTER: \($0)); it needs CAP_NET_ADMIN" } : nil
        if !dataPlaneTLS && !type.supportsPlaintext { throw .plaintextUnsupported(type: type) }
        self.executable = try Self.locateBinary(type, searchPath: searchPath, requireTrusted: requireTrustedBinary)
        try Self.prepareFolder(folder, logger: logger)
        ProcessReaper.becomeSubreaper()
    }

    // MARK: - start

    /// Starts the session's proxy and returns its handle once every listener accepts. The caller
    /// owns the handle: it alone stops the proxy (`stop`), and it learns of an exit through it.
    ///
    /// Mock: validates the spec, starts nothing (a handle with no process). Otherwise: validates
    /// `spec` (nothing is written if it is invalid), checks that every listener address is free,
    /// writes the key material and the config (0600, atomically), spawns the proxy, and waits
    /// (bounded) until it listens on every listener, probed without connecting: a LISTEN socket on
    /// the address (asked of the kernel, sock_diag) whose inode is held by the proxy's process group
    /// (/proc/<pid>/fd). On any failure, or if the calling task is cancelled meanwhile
    /// (`.stoppedWhileStarting`), the proxy is stopped, the session's files except the log are
    /// removed, and the error quotes the proxy's own message.
    public func start(_ spec: ProxySpec) async throws(DataPlaneError) -> RunningProxy {
        var plan = try SessionPlan(spec, tls: dataPlaneTLS, folder: folder,
                                   processors: ProcessInfo.processInfo.activeProcessorCount, buffers: buffers,
                                   maxConnections: maxConnections)
        plan.runAs = runAs
        plan.counting = countsTraffic
        plan.udp = try Self.checkUDP(spec, type: type, tls: dataPlaneTLS)
        guard let executable else {
            logger.info("mock data plane: no proxy started", ["session": plan.session.prefix, "role": "\(plan.role)"])
            return RunningProxy(session: plan.session, child: nil, log: nil)
        }
        switch await launch(plan, executable: executable) {
        case .success(let (child, log)): return RunningProxy(session: plan.session, child: child, log: log)
        case .failure(let error): throw error
        }
    }

    // MARK: - stop

    /// Stops the proxy `proxy` names: SIGTERM to its process group, `stopGrace`, SIGKILL, reap; then
    /// removes `<uid>.conf`, `.pem`, `.key`, `.pid`, `.session` (the `.log` stays), and prunes old
    /// logs of released sessions (`SessionLog.prune`). A proxy that already exited is only reaped and
    /// cleaned up after. Stopping twice does no harm.
    public func stop(_ proxy: RunningProxy) async {
        let session = proxy.session
        guard let child = proxy.child else {
            logger.info("mock session released", ["session": session.prefix])
            await pruneLogs()
            return
        }
        proxy.markStopRequested()
        let status = await child.terminate(grace: stopGrace)
        await proxy.log?.finish(within: .seconds(1))
        let files = SessionFiles(folder: folder, session: session)
        let problems = await BlockingWork.run { files.removable.compactMap { AtomicFile.remove($0) } }
        logger.info("proxy stopped", ["session": session.prefix, "type": type.name, "pid": String(child.pid),
                                      "status": status.description])
        if !problems.isEmpty {
            logger.warning("cannot remove session files", ["session": session.prefix, "error": problems.joined(separator: "; ")])
        }
        await pruneLogs()
    }
}

/// A session's proxy, as a `DataPlane` started it (or took it over from an earlier s2cs): the
/// handle the session's owner keeps, and the only way to stop that proxy (`DataPlane.stop`). A Mock
/// session has one too, with no process behind it.
public final class RunningProxy: Sendable {
    public let session: SessionID
    let child: ChildProcess?
    /// The proxy's output as s2cs captures it (nil: Mock, or a proxy taken over, whose output still
    /// goes to the s2cs that started it).
    let log: SessionLog?

    /// Set by `DataPlane.stop` while the proxy still ran: its exit from then on was asked for.
    private let stopRequested = Mutex(false)

    init(session: SessionID, child: ChildProcess?, log: SessionLog?) {
        self.session = session
        self.child = child
        self.log = log
    }

    /// Whether the proxy was stopped by its owner (`DataPlane.stop` came while it ran), rather than
    /// exiting on its own.
    public var wasStopped: Bool { stopRequested.withLock { $0 } }

    /// Marks the exit to come as asked for, unless the proxy has already exited on its own.
    func markStopRequested() {
        stopRequested.withLock { $0 = $0 || child?.status == nil }
    }

    /// The proxy's main process (nil for Mock).
    public var pid: Int32? { child?.pid }

    /// `.running(pid:)` while the proxy runs, `.exited(description:)` once it has exited (and been
    /// reaped); nil for Mock.
    public var status: ProxyStatus? {
        guard let child else { return nil }
        if let status = child.status { return .exited(description: status.description) }
        return .running(pid: child.pid)
    }

    /// While the proxy runs: how many bytes of output s2cs has appended to its log
    /// (`SessionLog.appendedBytes`), which changes only when the proxy wrote something (TrafficMeter
    /// reads a log only then). Nil for Mock and once the proxy has exited.
    public var logMark: Int? {
        guard let child, child.status == nil else { return nil }
        return log?.appendedBytes ?? 0
    }

    /// Waits until the proxy exits, however it ends (stopped or on its own), and returns how; nil at
    /// once for Mock, and when the calling task is cancelled.
    public func exit() async -> TerminationStatus? {
        guard let child else { return nil }
        return await child.wait()
    }
}
