#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CSciStream

/// Process-table helpers for supervision: /proc lookups, the subreaper setting, the reaping of a
/// child's orphaned process-group members, and the teardown of a process that is not our child
/// (a proxy left behind by a previous, killed daemon).
public enum ProcessReaper {
    /// Fields of /proc/<pid>/stat.
    public struct ProcessStat: Sendable, Equatable {
        public let pid: Int32
        public let state: Character
        public let parent: Int32
        public let processGroup: Int32
    }

    private static let subreaper = Mutex(false)

    /// Makes this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER): descendants orphaned
    /// by a child's exit (an nginx worker whose master was killed) are reparented to us instead of
    /// to PID 1, so that the supervisor can reap them by pid. On machines whose PID 1 does not
    /// reap (some containers), they would otherwise stay as zombies. Idempotent.
    @discardableResult
    public static func becomeSubreaper() -> Bool {
        subreaper.withLock { done in
            if !done { done = scistream_set_child_subreaper() == 0 }
            return done
        }
    }

    /// Reads a whole (small) file, such as one under /proc; nil if it cannot be opened or read, or
    /// holds more than `limit` bytes.
    public static func readSmallFile(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
        guard let file = try? FileDescriptor.open(path, O_RDONLY) else { return nil }
        return try? file.readAll(limit: limit)
    }

    /// /proc/<pid>/stat, or nil if the process does not exist (or has been reaped).
    public static func stat(pid: Int32) -> ProcessStat? {
        guard let bytes = readSmallFile("/proc/\(pid)/stat", limit: 4096) else { return nil }
        // "pid (comm) S ppid pgrp ...": comm may contain spaces and parentheses; take the last ')'.
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = String(decoding: bytes[(close + 1)...], as: UTF8.self).split(separator: " ")
        guard fields.count >= 3, let state = fields[0].first,
              let parent = Int32(fields[1]), let group = Int32(fields[2]) else { return nil }
        return ProcessStat(pid: pid, state: state, parent: parent, processGroup: group)
    }

    /// The pids whose process group is `group` (a scan of /proc).
    public static func members(ofGroup group: Int32) -> [Int32] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = Int32(name), let info = stat(pid: pid), info.processGroup == group else { continue }
            pids.append(pid)
        }
        return pids
    }

    /// The executable a process runs (/proc/<pid>/exe resolved), or nil if it is gone or not ours to see.
    public static func executable(pid: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// When a process started, in clock ticks since boot (field 22 of /proc/<pid>/stat): with the
    /// pid, it names one process for the whole uptime (a pid reused later has another start time).
    public static func startTime(pid: Int32) -> UInt64? {
        guard let bytes = readSmallFile("/proc/\(pid)/stat", limit: 4096),
              let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = String(decoding: bytes[(close + 1)...], as: UTF8.self).split(separator: " ")
        // After the comm: state is field 3, starttime field 22: index 22 - 3 = 19.
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    /// argv of a process (/proc/<pid>/cmdline split at NULs), or nil if it is gone.
    public static func commandLine(pid: Int32) -> [String]? {
        guard let bytes = readSmallFile("/proc/\(pid)/cmdline", limit: 65536) else { return nil }
        return bytes.split(separator: 0, omittingEmptySubsequences: true).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Reaps the children of this process that are in process group `group`, once its leader has
    /// exited and the group has been sent SIGKILL: polls every millisecond until none is left,
    /// bounded by `limit` (a member stuck in uninterruptible sleep is left to a later reap). As the
    /// subreaper, s2cs is the parent of every orphaned member; a member whose parent is another
    /// member is reparented to us when that parent exits, before the parent can be reaped.
    public static func reapChildren(ofGroup group: Int32, within limit: Duration = .seconds(5)) async {
        let deadline = ContinuousClock.now + limit
        while true {
            switch scistream_reap_group_member(group) {
            case 1: continue
            case 0:
                guard ContinuousClock.now < deadline else { return }
                try? await Task.sleep(for: .milliseconds(1))  // members killed a moment ago, not yet exited
            default: return
            }
        }
    }

    /// Reaps the swept members of an exited (adopted) leader's process group: each is awaited through a
    /// pidfd (bounded) and, if it was reparented to us, reaped by its pid. Members reparented
    /// elsewhere (we are not a subreaper) are left to their new parent.
    static func reap(members: [Int32], ofGroup group: Int32) async {
        let me = getpid()
        for member in members {
            let pidfd = scistream_pidfd_open(member)
            guard pidfd >= 0 else { continue }  // already gone
            defer { _ = Glibc.close(pidfd) }
            // The pidfd pins this exact process: check that it is still the member we swept.
            guard let info = stat(pid: member), info.processGroup == group else { continue }
            if info.state != "Z" {
                try? await Reactor.shared.wait(pidfd, for: .readable, deadline: .now + .seconds(5))
            }
            guard stat(pid: member)?.parent == me else { continue }
            var status: Int32 = 0
            while waitpid(member, &status, WNOHANG) == -1 && Errno.current == .interrupted {}
        }
    }

    /// The outcome of stopping a process that is not (necessarily) our child.
    public enum ForeignOutcome: Sendable, Equatable {
        /// It was not running.
        case notRunning
        /// It runs but is not the expected program: left alone.
        case notMatching
        /// It was stopped (by SIGTERM, or by SIGKILL after the grace period).
        case stopped
        /// It survived SIGKILL within the bound (uninterruptible sleep).
        case stillRunning
    }

    /// Stops process `pid` if `matches(argv)` accepts its command line: pins it with a pidfd first
    /// (so that a recycled pid is never signalled after the check), sends SIGTERM to it (and to its
    /// process group if it leads one), waits up to `grace`, then SIGKILL, and waits for its exit.
    /// A zombie counts as stopped; reaping it is left to its parent (if it is our own child, its
    /// `ChildProcess` watcher reaps it: two reapers of one pid could reap a recycled pid).
    public static func terminateForeign(
        pid: Int32, grace: Duration, matches: ([String]) -> Bool
    ) async -> ForeignOutcome {
        guard pid > 1, pid != getpid() else { return .notMatching }
        let pidfd = scistream_pidfd_open(pid)
        guard pidfd >= 0 else { return .notRunning }
        defer { _ = Glibc.close(pidfd) }
        guard let info = stat(pid: pid), info.state != "Z" else { return .notRunning }
        guard let argv = commandLine(pid: pid), matches(argv) else { return .notMatching }
        let leadsGroup = info.processGroup == pid

        func send(_ signal: Int32) {
            if leadsGroup { _ = kill(-pid, signal) }
            _ = scistream_pidfd_send_signal(pidfd, signal)
        }
        func exited(within duration: Duration) async -> Bool {
            do {
                try await Reactor.shared.wait(pidfd, for: .readable, deadline: .now + duration)
                return true
            } catch {
                return false
            }
        }

        send(SIGTERM)
        var stopped = await exited(within: grace)
        if !stopped {
            send(SIGKILL)
            stopped = await exited(within: .seconds(5))
        }
        if stopped && leadsGroup {
            // Stragglers of its group (workers): the exited leader, not yet reaped by its parent
            // in the common case, still pins the group id.
            if stat(pid: pid) != nil, !members(ofGroup: pid).filter({ $0 != pid }).isEmpty {
                _ = kill(-pid, SIGKILL)
            }
        }
        return stopped ? .stopped : .stillRunning
    }
}
