#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import SciStreamSystem

/// The data plane of one s2cs: one proxy process (HAProxy, nginx or stunnel) per session, started
/// from a generated config, supervised, and torn down.
///
/// Files per session, in `folder` (0700): `<uid>.conf`, `<uid>.pem` (certificate + private key),
/// `<uid>.key`, `<uid>.pid` (all 0600, removed by `stop`), and `<uid>.log` (0600, the proxy's
/// stdout and stderr captured by s2cs and bounded in size (`SessionLog`), KEPT after `stop` for
/// troubleshooting, appended to if the uid returns, and pruned after `SessionLog.retention`).
public actor DataPlane {
    public nonisolated let type: DataServerType
    public nonisolated let folder: String
    public nonisolated let dataPlaneTLS: Bool
    /// Per-connection buffer size written into HAProxy and nginx configs.
    public nonisolated let buffers: ProxyBuffers
    let logger: Logger
    let stopGrace: Duration
    let readinessTimeout: Duration
    /// The proxy's executable, found once at construction (nil for Mock).
    public nonisolated let executable: String?
    /// Connections one session's proxy holds at once (`SessionLimits.defaultMaxConnections`).
    let maxConnections: Int
    /// The size at which a session's log is rotated (`SessionLog.defaultLimit`).
    let logLimit: Int
    /// Tests turn this off to see the proxy's own bind error instead of ours.
    let checkListenersBeforeLaunch: Bool
    /// Who proxies drop to after start-up (s2cs runs as root); nil: they run as s2cs does.
    public nonisolated let runAs: ProxyIdentity?
    /// Why this data plane cannot limit who connects to its listeners, or nil when it can. Only
    /// Stunnel depends on this process: it has no source ACL, so s2cs filters its listening sockets,
    /// which the kernel allows only with CAP_NET_ADMIN (`SourceFilter.refusal`).
    public nonisolated let sourceFenceRefusal: String?

    enum Phase {
        case mock
        case starting
        case running(ChildProcess)
        case exited(ChildProcess, TerminationStatus)
        case stopping(Task<Void, Never>)
    }

    struct Session {
        var phase: Phase
        var log: SessionLog? = nil
        var stopRequested = false
        var startWaiters: [CheckedContinuation<Void, Never>] = []
    }

    var sessions: [SessionID: Session] = [:]
    /// Proxies that exited without being asked to, since start (s2cs --metrics).
    public private(set) var unexpectedExits = 0
    /// Whether proxies are configured to count traffic (TrafficMeter reads it). Off unless turned on:
    /// s2cs turns it on (`--traffic-counting`, default True).
    public private(set) var countsTraffic = false
    public func setCountsTraffic(_ on: Bool) { countsTraffic = on }

    /// Finds the proxy's binary, once, in the trusted directories of PATH and the standard ones
    /// (`defaultSearchPath`), and checks that root owns it (and, for stunnel, that it is not asked for
    /// plain TCP); creates `folder` with mode 0700 (tightening an existing one of ours), and makes
    /// this process a child subreaper so that a proxy's orphaned workers can be reaped.
    /// `path` is the PATH of the environment s2cs was started with (nil: the standard directories only).
    public init(type: DataServerType, folder: String, dataPlaneTLS: Bool, buffers: ProxyBuffers = .standard, logger: Logger,
                stopGrace: Duration = .seconds(2), runAs: ProxyIdentity? = nil, path: String? = nil) throws(DataPlaneError) {
        try self.init(type: type, folder: folder, dataPlaneTLS: dataPlaneTLS, buffers: buffers, logger: logger, stopGrace: stopGrace,
                      searchPath: DataPlane.defaultSearchPath(path: path), requireTrustedBinary: true, readinessTimeout: .seconds(10),
                      checkListenersBeforeLaunch: true, runAs: runAs)
    }

    /// Tests give their own `searchPath` (taken as it is, unless `requireTrustedBinary`), and
    /// smaller limits.
    init(type: DataServerType, folder: String, dataPlaneTLS: Bool, buffers: ProxyBuffers = .standard, logger: Logger, stopGrace: Duration,
         searchPath: [String], requireTrustedBinary: Bool = false, readinessTimeout: Duration,
         checkListenersBeforeLaunch: Bool, maxConnections: Int = SessionLimits.defaultMaxConnections,
         logLimit: Int = SessionLog.defaultLimit, runAs: ProxyIdentity? = nil) throws(DataPlaneError) {
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
        self.sourceFenceRefusal = type == .stunnel ? SourceFilter.refusal().map { "the kernel refuses socket filters to this process (SO_ATTACH_FILTER: \($0)); it needs CAP_NET_ADMIN" } : nil
        if !dataPlaneTLS && !type.supportsPlaintext { throw .plaintextUnsupported(type: type) }
        self.executable = try Self.locateBinary(type, searchPath: searchPath, requireTrusted: requireTrustedBinary)
        try Self.prepareFolder(folder, logger: logger)
        ProcessReaper.becomeSubreaper()
    }

    // MARK: - start

    /// Starts the session's proxy and returns once every listener accepts.
    ///
    /// Mock: validates and records the session, starts nothing. Otherwise: validates `spec`
    /// (nothing is written if it is invalid), checks that every listener address is free, writes
    /// the key material and the config (0600, atomically), spawns the proxy, and waits (bounded)
    /// until it listens on every listener, probed without connecting: a LISTEN socket on the
    /// address (asked of the kernel, sock_diag) whose inode is held by the proxy's process group
    /// (/proc/<pid>/fd). On any failure the proxy is stopped, the
    /// session's files except the log are removed, and the error quotes the proxy's own message.
    public func start(_ spec: ProxySpec) async throws(DataPlaneError) {
        var plan = try SessionPlan(spec, tls: dataPlaneTLS, folder: folder,
                                   processors: ProcessInfo.processInfo.activeProcessorCount, buffers: buffers,
                                   maxConnections: maxConnections)
        plan.runAs = runAs
        plan.counting = countsTraffic
        plan.udp = try Self.checkUDP(spec, type: type, tls: dataPlaneTLS)
        let key = plan.session
        guard sessions[key] == nil else { throw .alreadyRunning(session: plan.session.prefix) }
        if type == .mock {
            sessions[key] = Session(phase: .mock)
            logger.info("mock data plane: no proxy started", ["session": plan.session.prefix, "role": "\(plan.role)"])
            return
        }
        sessions[key] = Session(phase: .starting)
        let result = await launch(plan)
        let waiters = sessions[key]?.startWaiters ?? []
        switch result {
        case .success(let (child, log)):
            sessions[key] = Session(phase: .running(child), log: log)
            Task { [weak self] in
                guard let status = await child.wait() else { return }
                await self?.proxyExited(key: key, child: child, status: status)
            }
        case .failure:
            sessions[key] = nil
        }
        for waiter in waiters { waiter.resume() }
        if case .failure(let error) = result { throw error }
    }

    func proxyExited(key: SessionID, child: ChildProcess, status: TerminationStatus) {
        guard let entry = sessions[key], case .running(let current) = entry.phase, current === child else { return }
        sessions[key]?.phase = .exited(child, status)
        unexpectedExits += 1
        logger.error("proxy exited unexpectedly", [
            "session": key.prefix, "type": type.name, "pid": String(child.pid), "status": status.description,
        ])
    }

    // MARK: - status, stop

    /// `.running(pid:)` while the proxy runs, `.exited(description:)` if it died on its own; nil
    /// for an unknown uid, a Mock session, or one that is starting or stopping.
    public func status(_ session: SessionID) -> ProxyStatus? {
        guard let entry = sessions[session] else { return nil }
        switch entry.phase {
        case .running(let child): return .running(pid: child.pid)
        case .exited(_, let status): return .exited(description: status.description)
        case .mock, .starting, .stopping: return nil
        }
    }

    /// The sessions among `uids` (whole uids) whose proxy exited on its own, with how it ended
    /// (`status(uid:)`'s `.exited` description): one call for all sessions (`list`, `/metrics`).
    public func exits(_ uids: [SessionID]) -> [SessionID: String] {
        var exits: [SessionID: String] = [:]
        for uid in uids {
            if let entry = sessions[uid], case .exited(_, let status) = entry.phase { exits[uid] = status.description }
        }
        return exits
    }

    /// For each of `uids` whose proxy runs: how many bytes its log has been appended
    /// (`SessionLog.appendedBytes`), which changes only when the proxy wrote something. One call for
    /// all sessions (TrafficMeter), not one per session.
    public func logMarks(_ uids: [String]) -> [String: Int] {
        var marks: [String: Int] = [:]
        for uid in uids {
            // TrafficMeter names sessions by their text.
            guard let session = SessionID(uid), let entry = sessions[session], case .running = entry.phase else { continue }
            marks[uid] = entry.log?.appendedBytes ?? 0
        }
        return marks
    }

    /// The uids of the sessions this data plane holds (for diagnostics and shutdown).
    public var sessionIDs: [SessionID] { Array(sessions.keys) }

    /// Stops the session's proxy: SIGTERM to its process group, `stopGrace`, SIGKILL, reap; then
    /// removes `<uid>.conf`, `.pem`, `.key`, `.pid` (the `.log` stays), and prunes old logs of
    /// released sessions (`SessionLog.prune`). A session that is still starting is stopped as soon
    /// as its start gives up. No-op for an unknown uid.
    public func stop(_ session: SessionID) async {
        let key = session
        guard let entry = sessions[key] else { return }
        switch entry.phase {
        case .mock:
            sessions[key] = nil
            logger.info("mock session released", ["session": session.prefix])
            pruneLogs()
        case .starting:
            sessions[key]?.stopRequested = true
            await withCheckedContinuation { continuation in sessions[key, default: entry].startWaiters.append(continuation) }
            await stop(session)  // if the start won the race and is now running
        case .stopping(let task):
            await task.value
        case .running(let child), .exited(let child, _):
            let files = SessionFiles(folder: folder, session: session)
            let grace = stopGrace
            let logger = self.logger
            let type = self.type
            let log = entry.log
            let task = Task {
                let status = await child.terminate(grace: grace)
                await log?.finish(within: .seconds(1))
                var problems: [String] = []
                for path in files.removable {
                    if let problem = AtomicFile.remove(path) { problems.append(problem) }
                }
                logger.info("proxy stopped", ["session": session.prefix, "type": type.name, "pid": String(child.pid),
                                              "status": status.description])
                if !problems.isEmpty {
                    logger.warning("cannot remove session files", ["session": session.prefix, "error": problems.joined(separator: "; ")])
                }
            }
            sessions[key]?.phase = .stopping(task)
            await task.value
            sessions[key] = nil
            pruneLogs()
        }
    }

    /// Stops every session (s2cs shutdown), concurrently.
    public func stopAll() async {
        let keys = Array(sessions.keys)
        await withTaskGroup(of: Void.self) { group in
            for key in keys { group.addTask { await self.stop(key) } }
        }
    }

}
