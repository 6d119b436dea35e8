#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import SciStreamSystem

// Launch and readiness: key material and config written, the proxy spawned, its listeners awaited.
extension DataPlane {
    /// The listening sockets of a fenced stunnel session, one per listener in config order (stunnel
    /// takes inherited sockets in the order of its sections), each with the session's source filter
    /// attached before it listens.
    static func fencedListeners(_ plan: SessionPlan, addresses: [[SocketAddress]]) -> Result<[Socket], DataPlaneError> {
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

    /// The start of `plan`'s proxy with `executable`: what `start` does for every type but Mock. A
    /// start whose task is cancelled (its session released, s2cs shutting down) gives up at the next
    /// step, stopping what it started.
    func launch(_ plan: SessionPlan, executable: String) async -> Result<(ChildProcess, SessionLog), DataPlaneError> {
        let session = plan.session
        let files = plan.files
        let name = session.prefix
        let began = ContinuousClock.now

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
            if case .stoppedWhileStarting = error {
                // Asked for (the session was released, or s2cs is shutting down): not a failure.
                logger.info("proxy start given up: its session ended while it started", ["session": name, "type": type.name])
            } else {
                logger.error("proxy start failed", ["session": name, "type": type.name, "error": error.description])
            }
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

        if Task.isCancelled { return await fail(.stoppedWhileStarting(session: name)) }

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
        let spawned = ContinuousClock.now
        var probes = 0
        let deadline = ContinuousClock.now + readinessTimeout
        while true {
            probes += 1
            if let status = child.status {
                await log.finish(within: .seconds(1))  // every line the proxy wrote before it exited
                let text = ProxyLog.errorSummary(log.recentText, type: type)
                let message = text.isEmpty ? "it \(status)" : files.redact(text)
                return await fail(.startFailed(type: type, session: name, message: message), log: log)
            }
            if Task.isCancelled {
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
            // Where a start's time goes: before the spawn (checks, keys, files), then until it listens.
            "prepare_ms": String((spawned - began).wholeMilliseconds), "ready_ms": String((ContinuousClock.now - spawned).wholeMilliseconds),
            "probes": String(probes),
        ])
        return .success((child, log))
    }

    /// The proxy's command line (arguments after the executable), in the foreground.
    func runCommand(_ files: SessionFiles) -> [String] {
        switch type {
        // Never the uid on a command line (ps shows it to every local user): the config goes by its
        // link's name, s2cs writes the pid file itself, and early errors go to stderr (the log).
        case .haproxy: ["-W", "-db", "-f", files.launchConfig]
        case .nginx: ["-c", files.launchConfig, "-e", "stderr"]  // -e: the log opened before the config is read
        case .stunnel: [files.launchConfig]
        case .mock: []
        }
    }
}
