#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import SciStreamSystem

// Stale proxies at start: those an s2cs that was killed left behind, found and stopped.
extension DataPlane {
    /// At s2cs start: finds session files left by an s2cs that was killed, stops their proxies, and
    /// removes the sessions' files (not the logs); then prunes old logs (`SessionLog.prune`). A
    /// session's proxies are the pid its `<uid>.pid` names and every process whose command line runs
    /// a proxy with that session's config: s2cs writes the config (and the launch link) before it
    /// spawns the proxy and the pid file after, so a kill in between leaves a proxy that only its
    /// command line names. A pid is signalled only if /proc/<pid>/cmdline names haproxy, nginx or
    /// stunnel AND references that session's config, and its parent is not another running s2cs.
    /// The sessions in `keeping` (taken over by `adoptSessions`) are left alone.
    /// Returns how many proxies were stopped.
    public func reapStale(keeping: Set<SessionID> = []) async -> Int {
        let stopped = await stopStale(keeping: keeping)
        await pruneLogs()
        return stopped
    }

    private func stopStale(keeping: Set<SessionID>) async -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return 0 }
        var stale = Set<SessionID>()
        for name in names {
            // A session left something but its log: <uid>.conf/.pem/.key/.pid, or a temporary file.
            guard name.utf8.count > 37, let session = SessionID(String(name.prefix(36))),
                  name.dropFirst(36).first == ".", !keeping.contains(session) else { continue }
            let rest = name.dropFirst(37)
            guard SessionFiles.removableExtensions.contains(String(rest)) || rest.hasSuffix(".tmp") else { continue }
            stale.insert(session)
        }
        let running = stale.isEmpty ? [] : Self.runningCommandLines()
        var stopped = 0
        for session in stale.sorted(by: { $0.text < $1.text }) {
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
            for name in names where name.hasPrefix(session.text + ".") && name.hasSuffix(AtomicFile.temporarySuffix) {
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
