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

    var sessions: [String: Session] = [:]
    /// Proxies that exited without being asked to, since start (s2cs --metrics).
    public private(set) var unexpectedExits = 0
    /// Whether proxies are configured to count traffic (TrafficMeter reads it). Off unless turned on:
    /// s2cs turns it on (`--traffic-counting`, default True).
    public private(set) var countsTraffic = false
    public func setCountsTraffic(_ on: Bool) { countsTraffic = on }

    /// The folder s2cs keeps session files in: `$HAPROXY_CONFIG_PATH`, or `~/.scistream`, from the
    /// environment s2cs was started with (read once, at the edge, and passed in).
    public static func defaultFolder(environment: [String: String]) -> String {
        if let configured = environment["HAPROXY_CONFIG_PATH"], !configured.isEmpty { return configured }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.scistream" }
        if let entry = getpwuid(geteuid()), let directory = entry.pointee.pw_dir {
            return String(cString: directory) + "/.scistream"
        }
        return "/root/.scistream"
    }

    /// The standard directories searched after PATH's (HAProxy and nginx live in /usr/sbin, which a
    /// non-root PATH often lacks).
    static let standardDirectories = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

    /// Where proxy binaries are looked for: the directories of `path` (PATH), then the standard ones,
    /// keeping only those that are absolute and that root owns and group and others cannot write,
    /// all the way up to `/` (`isTrustedDirectory`). A relative entry ("", ".", "bin") or one a
    /// user could plant a `haproxy` in is skipped: s2cs may run as root and start what it finds.
    static func defaultSearchPath(path: String?) -> [String] {
        var result: [String] = []
        for directory in (path ?? "").split(separator: ":", omittingEmptySubsequences: false).map(String.init) + standardDirectories
        where !result.contains(directory) && isTrustedDirectory(directory) {
            result.append(directory)
        }
        return result
    }

    /// Whether `directory` is absolute and it and every directory above it (symbolic links
    /// resolved) belong to root and are not writable by group or others.
    static func isTrustedDirectory(_ directory: String) -> Bool {
        guard directory.hasPrefix("/"), let resolved = realpath(directory, nil) else { return false }
        defer { free(resolved) }
        var current = String(cString: resolved)
        while true {
            var info = stat()
            guard stat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR, info.st_uid == 0,
                  info.st_mode & 0o022 == 0 else { return false }
            if current == "/" { return true }
            guard let slash = current.lastIndex(of: "/") else { return false }
            current = slash == current.startIndex ? "/" : String(current[..<slash])
        }
    }

    /// Whether the file at `path` (symbolic links resolved) belongs to root, is not writable by group
    /// or others, and lies in a trusted directory.
    static func isTrustedFile(_ path: String) -> Bool {
        guard let resolved = realpath(path, nil) else { return false }
        defer { free(resolved) }
        let real = String(cString: resolved)
        var info = stat()
        guard stat(real, &info) == 0, info.st_uid == 0, info.st_mode & 0o022 == 0,
              let slash = real.lastIndex(of: "/") else { return false }
        return isTrustedDirectory(slash == real.startIndex ? "/" : String(real[..<slash]))
    }

    /// The environment proxies run with: a fixed PATH and the C locale (English error texts, which
    /// `start` quotes). Nothing of s2cs's own environment is passed on.
    static let childEnvironment = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]

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

    /// The proxy's executable path; nil for Mock. With `requireTrusted`, a file that root does not
    /// own, or that group or others can write, is passed over.
    static func locateBinary(_ type: DataServerType, searchPath: [String], requireTrusted: Bool) throws(DataPlaneError) -> String? {
        guard let binary = type.binary else { return nil }
        var found: String? = nil
        for directory in searchPath where !directory.isEmpty {
            guard let path = ChildProcess.findExecutable(binary, searchPath: [directory]) else { continue }
            if requireTrusted && !isTrustedFile(path) { continue }
            found = path
            break
        }
        guard let found else { throw .notInstalled(type: type, searched: searchPath) }
        if type == .nginx && access(ProxyConfig.nginxStreamModule, R_OK) != 0 {
            throw .nginxStreamModuleMissing(path: ProxyConfig.nginxStreamModule)
        }
        return found
    }

    /// Creates the folder (and missing parents) with mode 0700. The folder itself is opened without
    /// following a symbolic link and checked and tightened through that descriptor, never by path: a
    /// link planted where the folder should be (to /etc, say) is refused, never chmod'ed through. It
    /// must be a directory owned by the user s2cs runs as and not a shared one (sticky bit, like
    /// /tmp); if it is open to others, it is tightened to 0700 with a warning.
    static func prepareFolder(_ folder: String, logger: Logger) throws(DataPlaneError) {
        let shown = printable(folder, limit: 200)
        guard isConfigSafePath(folder) else {
            throw .folder(path: shown, reason: "the path must be absolute and use only letters, digits and . _ / + @ % = , - "
                + "(it is written into proxy configs)")
        }
        var partial = ""
        for component in folder.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, 0o700) != 0 && errno != EEXIST {
                throw .folder(path: shown, reason: "cannot create \(partial): \(Errno.current)")
            }
        }
        // `partial` is the folder without a trailing slash, which would make open follow a link.
        let fd = open(partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let error = Errno.current
            var link = stat()
            if lstat(partial, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK {
                throw .folder(path: shown, reason: "it is a symbolic link: give the folder itself, not a link to it")
            }
            throw .folder(path: shown, reason: error.rawValue == ENOTDIR ? "it is not a directory" : error.description)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .folder(path: shown, reason: Errno.current.description) }
        guard info.st_uid == geteuid() else {
            throw .folder(path: shown, reason: "it belongs to uid \(info.st_uid), not to the user s2cs runs as (uid \(geteuid()))")
        }
        guard info.st_mode & S_ISVTX == 0 else {
            throw .folder(path: shown, reason: "it is a shared directory (sticky bit): give a private one")
        }
        if info.st_mode & 0o077 != 0 {
            guard fchmod(fd, 0o700) == 0 else { throw .folder(path: shown, reason: "cannot chmod 700: \(Errno.current)") }
            logger.warning("session folder was open to other users: now 0700",
                           ["folder": folder, "was": String(info.st_mode & 0o777, radix: 8)])
        }
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
        let key = plan.session.text
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

    /// The listening sockets of a fenced stunnel session, one per listener in config order (stunnel
    /// takes inherited sockets in the order of its sections), each with the session's source filter
    /// attached before it listens.
    private static func fencedListeners(_ plan: SessionPlan, addresses: [[SocketAddress]]) -> Result<[Socket], DataPlaneError> {
        let filter = SourceFilter(allowing: plan.allowedSources)
        var sockets: [Socket] = []
        for (route, resolved) in zip(plan.routes, addresses) {
            guard resolved.count == 1, let address = resolved.first else {
                return .failure(.invalidSpec(session: plan.session.prefix, reason:
                    "listener \(route.listener) stands for \(resolved.count) addresses: a fenced stunnel listener needs a numeric address"))
            }
            do {
                sockets.append(try Socket.listen(on: address, prepare: { fd throws(Errno) in try filter.attach(to: fd) }))
            } catch {
                for socket in sockets { socket.close() }
                return .failure(.listenerUnavailable(session: plan.session.prefix, listener: route.listener.description, reason: error.description))
            }
        }
        return .success(sockets)
    }

    private func shouldAbandon(_ key: String) -> Bool {
        Task.isCancelled || sessions[key]?.stopRequested == true
    }

    private func launch(_ plan: SessionPlan) async -> Result<(ChildProcess, SessionLog), DataPlaneError> {
        let session = plan.session
        let files = plan.files
        let name = session.prefix
        guard let executable else { return .failure(.invalidSessionID) }  // only Mock has none, and it launches nothing

        var addresses: [[SocketAddress]] = []
        for route in plan.routes {
            do {
                addresses.append(try ListenerProbe.addresses(of: route.listener))
            } catch {
                if case .listenerUnavailable(_, let listener, let reason) = error {
                    return .failure(.listenerUnavailable(session: name, listener: listener, reason: reason))
                }
                return .failure(error)
            }
        }
        if checkListenersBeforeLaunch {
            for (route, resolved) in zip(plan.routes, addresses) {
                for address in resolved {
                    if let error = Socket.bindError(address) {
                        return .failure(.listenerUnavailable(session: name, listener: route.listener.description, reason: error.description))
                    }
                }
            }
        }
        // stunnel has no source ACL: fenced listeners are bound here, filtered, and handed over.
        var handedOver: [Socket] = []
        if type == .stunnel && !plan.allowedSources.isEmpty {
            switch Self.fencedListeners(plan, addresses: addresses) {
            case .success(let sockets): handedOver = sockets
            case .failure(let error): return .failure(error)
            }
        }
        defer { for socket in handedOver { socket.close() } }  // the proxy holds its own copies
        if plan.rateKbps > 0 && !type.supportsRateLimit {
            logger.info("rate limit not applied: \(type.name) cannot limit a connection's rate",
                        ["session": name, "rate_kbps": String(plan.rateKbps)])
        }

        // Key material and config. From here on, failures remove what was written.
        func fail(_ error: DataPlaneError, child: ChildProcess? = nil, log: SessionLog? = nil) async
            -> Result<(ChildProcess, SessionLog), DataPlaneError> {
            if let child { await child.terminate(grace: stopGrace) }
            await log?.finish(within: .seconds(1))
            for path in files.removable { AtomicFile.remove(path) }
            logger.error("proxy start failed", ["session": name, "type": type.name, "error": error.description])
            return .failure(error)
        }
        // Key generation and three fsynced files: off the cooperative pool.
        let type = self.type
        let written = await BlockingWork.run { () -> DataPlaneError? in
            do {
                if plan.tls {
                    let keys = try SessionKeys.derive(session)
                    try AtomicFile.write(keys.certificatePEM + keys.privateKeyPEM, to: files.certificate, display: files.display("pem"))
                    try AtomicFile.write(keys.privateKeyPEM, to: files.key, display: files.display("key"))
                }
                try AtomicFile.write(ProxyConfig.render(plan, for: type), to: files.config, display: files.display("conf"))
                try AtomicFile.link(files.launchConfig, to: "\(files.session.text).conf", display: files.display("conf"))
                return nil
            } catch let error as DataPlaneError {
                return error
            } catch {
                return .keyMaterial(reason: "\(error)")  // not reached: both throw DataPlaneError only
            }
        }
        if let written { return await fail(written) }

        if shouldAbandon(files.session.text) { return await fail(.stoppedWhileStarting(session: name)) }

        // The proxy's output goes through a pipe to s2cs, which keeps <uid>.log bounded.
        let log: SessionLog
        do {
            log = try SessionLog(files, limit: logLimit)
        } catch {
            return await fail(error)
        }
        let child: ChildProcess
        do {
            // stunnel has no connection cap of its own but its client limit, derived from RLIMIT_NOFILE.
            let openFiles = type == .stunnel ? SessionLimits.stunnelFileLimit(forClients: plan.maxConnections) : nil
            child = try await ChildProcess.spawn(executable: executable, arguments: runCommand(files), environment: Self.childEnvironment,
                                                 output: .descriptor(log.childEnd), openFiles: openFiles,
                                                 listening: handedOver.map(\.fd))
        } catch {
            return await fail(.spawnFailed(type: type, session: name, reason: error.errno.description), log: log)
        }
        log.closeChildEnd()
        // Our own record of the pid at once, and the only writer of <uid>.pid (no proxy is told to
        // write it): a crash of s2cs from here on leaves a pid file for reapStale.
        let pid = child.pid
        let pidError = await BlockingWork.run { () -> DataPlaneError? in
            do { try AtomicFile.write("\(pid)\n", to: files.pid, display: files.display("pid")); return nil } catch { return error as? DataPlaneError }
        }
        if let pidError {
            logger.warning("cannot write the pid file", ["session": name, "error": pidError.description])
        }

        // Readiness: every listener has a LISTEN socket, or the proxy exited, or the time is up.
        let deadline = ContinuousClock.now + readinessTimeout
        while true {
            if let status = child.status {
                await log.finish(within: .seconds(1))  // every line the proxy wrote before it exited
                let text = ProxyLog.errorSummary(log.recentText, type: type)
                let message = text.isEmpty ? "it \(status)" : files.redact(text)
                return await fail(.startFailed(type: type, session: name, message: message), log: log)
            }
            if shouldAbandon(files.session.text) {
                return await fail(.stoppedWhileStarting(session: name), child: child, log: log)
            }
            // A LISTEN socket on the address is not enough: it must be the proxy's own (one of its
            // process group's descriptors), or a socket someone else holds would pass for it.
            let table: [ListenerProbe.Listener: Set<UInt64>]
            do {
                table = try ListenerProbe.listeningSockets(on: addresses.flatMap { $0 })
            } catch {
                return await fail(.startFailed(type: type, session: name, message: "cannot list the listening sockets: \(error)"),
                                  child: child, log: log)
            }
            let bound = zip(plan.routes, addresses).map { ($0.0, ListenerProbe.listeners($0.1, in: table)) }
            var missing = bound.first { $0.1.isEmpty }?.0
            if missing == nil {
                let pid = child.pid
                let owned = await BlockingWork.run { ListenerProbe.socketInodes(ofProcessGroup: pid) }
                missing = bound.first { $0.1.isDisjoint(with: owned) }?.0
                if missing != nil {
                    // Not below the proxy: maybe a member of its group elsewhere (all of /proc, rarely).
                    let everyMember = await BlockingWork.run { ListenerProbe.socketInodes(ofProcessGroup: pid, everyMember: true) }
                    missing = bound.first { $0.1.isDisjoint(with: everyMember) }?.0
                }
            }
            // Every listener is the proxy's: it is ready unless it has exited meanwhile (an exit the
            // reaper has not published yet shows as a zombie).
            if missing == nil && child.status == nil && ProcessReaper.stat(pid: child.pid).map({ $0.state != "Z" }) == true {
                break
            }
            if ContinuousClock.now >= deadline {
                let seconds = Int(readinessTimeout.components.seconds)
                let listener = (missing ?? plan.routes[0]).listener.description  // routes: never empty (SessionPlan)
                return await fail(.notReady(type: type, session: name, listener: listener, seconds: seconds), child: child, log: log)
            }
            try? await Task.sleep(for: .milliseconds(2))  // a query costs microseconds: poll often
        }
        logger.info("proxy started", [
            "session": name, "type": type.name, "role": "\(plan.role)", "pid": String(child.pid),
            "listeners": plan.routes.map { $0.listener.description }.joined(separator: ","),
            "tls": plan.tls ? "on" : "off",
        ])
        return .success((child, log))
    }

    /// The proxy's command line (arguments after the executable), in the foreground.
    private func runCommand(_ files: SessionFiles) -> [String] {
        switch type {
        // Never the uid on a command line (ps shows it to every local user): the config goes by its
        // link's name, s2cs writes the pid file itself, and early errors go to stderr (the log).
        case .haproxy: ["-W", "-db", "-f", files.launchConfig]
        case .nginx: ["-c", files.launchConfig, "-e", "stderr"]  // -e: the log opened before the config is read
        case .stunnel: [files.launchConfig]
        case .mock: []
        }
    }

    func proxyExited(key: String, child: ChildProcess, status: TerminationStatus) {
        guard let entry = sessions[key], case .running(let current) = entry.phase, current === child else { return }
        sessions[key]?.phase = .exited(child, status)
        unexpectedExits += 1
        logger.error("proxy exited unexpectedly", [
            "session": String(key.prefix(8)), "type": type.name, "pid": String(child.pid), "status": status.description,
        ])
    }

    // MARK: - status, stop

    /// `.running(pid:)` while the proxy runs, `.exited(description:)` if it died on its own; nil
    /// for an unknown uid, a Mock session, or one that is starting or stopping.
    public func status(uid: String) -> ProxyStatus? {
        guard let session = SessionID(uid), let entry = sessions[session.text] else { return nil }
        switch entry.phase {
        case .running(let child): return .running(pid: child.pid)
        case .exited(_, let status): return .exited(description: status.description)
        case .mock, .starting, .stopping: return nil
        }
    }

    /// The sessions among `uids` (whole uids) whose proxy exited on its own, with how it ended
    /// (`status(uid:)`'s `.exited` description): one call for all sessions (`list`, `/metrics`).
    public func exits(_ uids: [String]) -> [String: String] {
        var exits: [String: String] = [:]
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
            guard let entry = sessions[uid], case .running = entry.phase else { continue }
            marks[uid] = entry.log?.appendedBytes ?? 0
        }
        return marks
    }

    /// The uids of the sessions this data plane holds (for diagnostics and shutdown).
    public var sessionIDs: [String] { Array(sessions.keys) }

    /// Stops the session's proxy: SIGTERM to its process group, `stopGrace`, SIGKILL, reap; then
    /// removes `<uid>.conf`, `.pem`, `.key`, `.pid` (the `.log` stays), and prunes old logs of
    /// released sessions (`SessionLog.prune`). A session that is still starting is stopped as soon
    /// as its start gives up. No-op for an unknown uid.
    public func stop(uid: String) async {
        guard let session = SessionID(uid) else { return }
        let key = session.text
        guard let entry = sessions[key] else { return }
        switch entry.phase {
        case .mock:
            sessions[key] = nil
            logger.info("mock session released", ["session": session.prefix])
            pruneLogs()
        case .starting:
            sessions[key]?.stopRequested = true
            await withCheckedContinuation { continuation in sessions[key, default: entry].startWaiters.append(continuation) }
            await stop(uid: uid)  // if the start won the race and is now running
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

    /// Removes the logs of released sessions older than `SessionLog.retention`, and the oldest beyond
    /// `SessionLog.maximumKept`; the logs of the sessions held here stay.
    private func pruneLogs() {
        let removed = SessionLog.prune(folder: folder, holding: Set(sessions.keys))
        if removed > 0 { logger.info("old session logs removed", ["count": String(removed), "folder": folder]) }
    }

    /// Stops every session (s2cs shutdown), concurrently.
    public func stopAll() async {
        let keys = Array(sessions.keys)
        await withTaskGroup(of: Void.self) { group in
            for key in keys { group.addTask { await self.stop(uid: key) } }
        }
    }

    // MARK: - stale sessions

    /// At s2cs start: finds session files left by an s2cs that was killed, stops their proxies, and
    /// removes the sessions' files (not the logs); then prunes old logs (`SessionLog.prune`). A
    /// session's proxies are the pid its `<uid>.pid` names and every process whose command line runs
    /// a proxy with that session's config: s2cs writes the config (and the launch link) before it
    /// spawns the proxy and the pid file after, so a kill in between leaves a proxy that only its
    /// command line names. A pid is signalled only if /proc/<pid>/cmdline names haproxy, nginx or
    /// stunnel AND references that session's config, and its parent is not another running s2cs.
    /// Returns how many proxies were stopped.
    public func reapStale() async -> Int {
        defer { pruneLogs() }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return 0 }
        var stale = Set<String>()
        for name in names {
            // A session left something but its log: <uid>.conf/.pem/.key/.pid, or a temporary file.
            guard name.utf8.count > 37, let session = SessionID(String(name.prefix(36))),
                  name.dropFirst(36).first == ".", sessions[session.text] == nil else { continue }
            let rest = name.dropFirst(37)
            guard SessionFiles.removableExtensions.contains(String(rest)) || rest.hasSuffix(".tmp") else { continue }
            stale.insert(session.text)
        }
        let running = stale.isEmpty ? [] : Self.runningCommandLines()
        var stopped = 0
        for key in stale.sorted() {
            guard let session = SessionID(key) else { continue }
            let files = SessionFiles(folder: folder, session: session)
            let isThisSessionsProxy = { (argv: [String]) in Self.isProxy(argv, using: files.launchConfig) || Self.isProxy(argv, using: files.config) }
            var pids: [Int32] = []
            if let text = ProcessReaper.readSmallFile(files.pid, limit: 64),
               let pid = Int32(String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 {
                pids.append(pid)
            }
            // The proxy itself, not its workers (HAProxy -W runs one with the same command line).
            let found = running.filter { !pids.contains($0.pid) && isThisSessionsProxy($0.argv) }.map(\.pid)
            let unrecorded = found.filter { pid in
                ProcessReaper.stat(pid: pid).map { !pids.contains($0.parent) && !found.contains($0.parent) } ?? false
            }
            if !unrecorded.isEmpty {
                logger.warning("stale proxy found by its config, not by a pid file", ["session": session.prefix, "pids": unrecorded.map(String.init).joined(separator: ",")])
            }
            pids += unrecorded
            if let owned = pids.lazy.compactMap({ pid in Self.liveOwner(of: pid).map { (pid, $0) } }).first {
                logger.info("stale session skipped: its proxy belongs to a running s2cs",
                            ["session": session.prefix, "pid": String(owned.0), "s2cs_pid": String(owned.1)])
                continue
            }
            var keepFiles = false
            for pid in pids {
                switch await ProcessReaper.terminateForeign(pid: pid, grace: stopGrace, matches: isThisSessionsProxy) {
                case .stopped:
                    stopped += 1
                    logger.info("stale proxy stopped", ["session": session.prefix, "pid": String(pid)])
                case .notMatching:
                    logger.warning("stale pid file names another program: left alone", ["session": session.prefix, "pid": String(pid)])
                case .stillRunning:
                    keepFiles = true
                    logger.error("stale proxy survived SIGKILL", ["session": session.prefix, "pid": String(pid)])
                case .notRunning:
                    break
                }
            }
            if keepFiles { continue }
            for path in files.removable { AtomicFile.remove(path) }
            for name in names where name.hasPrefix(key + ".") && name.hasSuffix(AtomicFile.temporarySuffix) {
                AtomicFile.remove(folder + "/" + name)
            }
            logger.info("stale session files removed", ["session": session.prefix])
        }
        return stopped
    }

    /// Every process but this one with its command line, from /proc (read once per `reapStale`).
    static func runningCommandLines() -> [(pid: Int32, argv: [String])] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry in
            guard let pid = Int32(entry), pid > 1, pid != getpid(), let argv = ProcessReaper.commandLine(pid: pid) else { return nil }
            return (pid, argv)
        }
    }

    /// Whether `argv` (from /proc/<pid>/cmdline) is a proxy run with `config`. nginx rewrites its
    /// title to "nginx: master process /usr/sbin/nginx -c <config> ...", possibly in one string.
    static func isProxy(_ argv: [String], using config: String) -> Bool {
        let words = argv.flatMap { $0.split(separator: " ").map(String.init) }
        guard let first = words.first else { return false }
        var program = first.hasSuffix(":") ? String(first.dropLast()) : first
        if let slash = program.lastIndex(of: "/") { program = String(program[program.index(after: slash)...]) }
        guard ["haproxy", "nginx", "stunnel", "stunnel4"].contains(program) else { return false }
        return words.contains(config)
    }

    /// The pid of a running s2cs (other than us) that is the parent of `pid`, if any.
    static func liveOwner(of pid: Int32) -> Int32? {
        guard let parent = ProcessReaper.stat(pid: pid)?.parent, parent > 1, parent != getpid(),
              let argv = ProcessReaper.commandLine(pid: parent), let first = argv.first else { return nil }
        return first.split(separator: "/").last == "s2cs" ? parent : nil
    }
}
