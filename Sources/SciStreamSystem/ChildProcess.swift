#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CSciStream

/// How a child process ended.
public enum TerminationStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(signal: Int32)

    init(waitStatus: Int32) {
        if scistream_wifsignaled(waitStatus) != 0 {
            self = .signaled(signal: scistream_wtermsig(waitStatus))
        } else {
            self = .exited(code: scistream_wexitstatus(waitStatus))
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal): "killed by \(TerminationStatus.signalName(signal))"
        }
    }

    /// "SIGTERM", "SIGKILL"... or "signal 42".
    public static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
            SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
            SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
            SIGCHLD: "SIGCHLD", SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP", SIGXCPU: "SIGXCPU",
            SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS",
        ]
        return names[signal] ?? "signal \(signal)"
    }
}

/// A child that could not be started: the binary is missing, not executable, or the log file
/// could not be opened. `errno` is the child's (or the parent's) error number.
public struct SpawnError: Error, Sendable, CustomStringConvertible {
    public let executable: String
    public let errno: Errno
    public var description: String { "cannot run \(executable): \(errno)" }
}

/// A supervised child process, started in its own session and process group.
///
/// A watcher task awaits the child's pidfd through the `Reactor`. When the leader exits it sweeps
/// the rest of the process group with SIGKILL (while the unreaped leader still pins the group id,
/// so the id cannot have been reused), reaps the leader with `waitpid(pid, WNOHANG)`, reaps the
/// swept members that were reparented to this process (see `ProcessReaper.becomeSubreaper`), and
/// only then publishes the exit status: once `status` is non-nil, the pid is released.
/// Reaping is always by specific pid, never `waitpid(-1)`.
public final class ChildProcess: Sendable {
    public let pid: Int32
    public let executable: String
    /// Started by an earlier s2cs and adopted by this one (`adopt`): not our child, so its exit is
    /// seen through its pidfd and its status is not known (`.exited(code: -1)`); its parent reaps it.
    public let adopted: Bool

    private struct State {
        var pidfd: Int32
        var leaderReaped = false
        var status: TerminationStatus?
        var waiters: [UInt64: CheckedContinuation<TerminationStatus?, Never>] = [:]
        var cancelledBeforeRegistration: Set<UInt64> = []
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    private init(pid: Int32, pidfd: Int32, executable: String, adopted: Bool = false) {
        self.pid = pid
        self.executable = executable
        self.adopted = adopted
        self.state = Mutex(State(pidfd: pidfd))
    }

    /// Takes over the supervision of a running process group leader that this process did not
    /// start (a proxy of an s2cs that exited or was killed): its pidfd tells when it exits, and
    /// `terminate` signals its group while the leader lives. The caller has checked that `pid` is
    /// the process it should be (start time, executable, command line). Nil if it is gone or is not
    /// a group leader.
    public static func adopt(pid: Int32, executable: String) -> ChildProcess? {
        guard pid > 1, ProcessReaper.stat(pid: pid).map({ $0.processGroup == pid && $0.state != "Z" }) == true else { return nil }
        let pidfd = scistream_pidfd_open(pid)
        guard pidfd >= 0 else { return nil }
        let child = ChildProcess(pid: pid, pidfd: pidfd, executable: executable, adopted: true)
        Task.detached { await child.watch() }
        return child
    }

    /// Finds `name` in `searchPath` (or returns it if it contains a slash): the first regular,
    /// executable file. Proxies live in /usr/sbin, which a non-root PATH often lacks.
    public static func findExecutable(_ name: String, searchPath: [String]) -> String? {
        if name.contains("/") { return name }
        for directory in searchPath where !directory.isEmpty {
            let candidate = directory.hasSuffix("/") ? directory + name : directory + "/" + name
            var info = stat()
            if stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        return nil
    }

    /// Starts `executable` with `arguments` (argv[1...]) and `environment` ("KEY=value"), stdin from
    /// /dev/null and stdout+stderr appended to `logPath`, with the file-creation mask `fileMask`
    /// (by default 077: what the child creates, such as a pid file, is private). Returns once the
    /// exec has succeeded; a failed exec (a missing binary: "No such file or directory") throws
    /// with the child's errno, after the failed child has been reaped.
    public static func spawn(
        executable: String, arguments: [String], environment: [String], logPath: String, fileMask: mode_t = 0o077
    ) async throws(SpawnError) -> ChildProcess {
        try await spawn(executable: executable, arguments: arguments, environment: environment,
                        output: .appending(to: logPath), fileMask: fileMask)
    }

    /// A pipe for a child's output (`Output.descriptor(write)`): both ends close-on-exec from birth,
    /// the read end non-blocking (await it with the `Reactor`).
    public static func outputPipe() throws(Errno) -> (read: Int32, write: Int32) {
        var ends: [Int32] = [-1, -1]
        let result = ends.withUnsafeMutableBufferPointer { scistream_output_pipe($0.baseAddress) }
        guard result == 0 else { throw Errno(result) }
        return (ends[0], ends[1])
    }

    /// Where a child's stdout and stderr go.
    public enum Output: Sendable {
        /// Appended to a file (created 0600 if missing; a symbolic link is refused).
        case appending(to: String)
        /// A descriptor of the caller's, such as a pipe's write end; the caller keeps it and closes it.
        case descriptor(Int32)
    }

    /// As `spawn(executable:arguments:environment:logPath:fileMask:)`, with the output going to
    /// `output`, and with a soft RLIMIT_NOFILE of `openFiles` when given (stunnel derives its
    /// connection limit from it), and with `listening` handed over by socket activation when not
    /// empty (they become its descriptors 3, 4, ..., announced by LISTEN_FDS and LISTEN_PID; the
    /// caller keeps its own and closes them).
    public static func spawn(
        executable: String, arguments: [String], environment: [String], output: Output, openFiles: Int? = nil,
        fileMask: mode_t = 0o077, listening: [Int32] = []
    ) async throws(SpawnError) -> ChildProcess {
        let argv = [executable] + arguments
        let (logPath, outputFD): (String, Int32) = switch output {
        case .appending(let path): (path, -1)
        case .descriptor(let fd): ("", fd)
        }
        // clone and exec off the cooperative pool: the child blocks this thread until its exec.
        let (result, pid, pidfd, errorPipe) = await BlockingWork.run { () -> (Int32, pid_t, Int32, Int32) in
            var pid: pid_t = 0
            var pidfd: Int32 = -1
            var errorPipe: Int32 = -1
            let result = withCStringArray(argv) { argvPointer in
                withCStringArray(environment) { envPointer in
                    listening.withUnsafeBufferPointer { sockets in
                        scistream_spawn(executable, argvPointer, envPointer, logPath, outputFD, openFiles ?? 0, fileMask,
                                        sockets.baseAddress, Int32(sockets.count), &pid, &pidfd, &errorPipe)
                    }
                }
            }
            return (result, pid, pidfd, errorPipe)
        }
        if result != 0 {
            throw SpawnError(executable: executable, errno: Errno(result))
        }
        let child = ChildProcess(pid: pid, pidfd: pidfd, executable: executable)
        Task.detached { await child.watch() }

        // The error pipe: end-of-file once exec succeeded, or the child's errno.
        defer { _ = Glibc.close(errorPipe) }
        var childErrno: Int32 = 0
        while true {
            let count = Glibc.read(errorPipe, &childErrno, MemoryLayout<Int32>.size)
            if count == 0 { return child }
            if count == MemoryLayout<Int32>.size { break }
            if count > 0 { childErrno = EIO; break }  // a short read: cannot happen for 4 bytes on a pipe
            let error = Errno.current
            if error == .interrupted { continue }
            if error == .wouldBlock {
                // Uncancellable on purpose: the child must be accounted for either way.
                try? await Reactor.shared.wait(errorPipe, for: .readable)
                continue
            }
            childErrno = error.rawValue
            break
        }
        _ = await child.wait()  // the child called _exit(127): reap it before reporting
        throw SpawnError(executable: executable, errno: Errno(childErrno))
    }

    /// The exit status once the process has exited and been reaped; nil while it runs.
    public var status: TerminationStatus? { state.withLock { $0.status } }

    /// Sends `signal` to the child's process group, as long as its leader has not been reaped
    /// (so that the group id is still ours). Returns whether the signal was delivered.
    @discardableResult
    public func signalGroup(_ signal: Int32) -> Bool {
        state.withLock { state in
            guard !state.leaderReaped else { return false }
            return kill(-pid, signal) == 0
        }
    }

    /// Waits until the process has exited and been reaped. Returns nil if `timeout` passes first
    /// or the calling task is cancelled.
    public func wait(timeout: Duration? = nil) async -> TerminationStatus? {
        guard let timeout else { return await waitForStatus() }
        return await withTaskGroup(of: TerminationStatus?.self) { group in
            group.addTask { await self.waitForStatus() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// Teardown: SIGTERM to the process group, up to `grace` for it to exit, then SIGKILL to the
    /// group, then the reap. Not cancellable: it returns only once the pid has been released.
    @discardableResult
    public func terminate(grace: Duration = .seconds(2)) async -> TerminationStatus {
        await Task {
            if let status = self.status { return status }
            self.signalGroup(SIGTERM)
            if let status = await self.wait(timeout: grace) { return status }
            while true {
                self.signalGroup(SIGKILL)
                // SIGKILL cannot be caught; a process in uninterruptible sleep gets it on waking.
                if let status = await self.wait(timeout: .seconds(5)) { return status }
            }
        }.value
    }

    private func waitForStatus() async -> TerminationStatus? {
        let id = state.withLock { state -> UInt64 in
            state.nextID &+= 1
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<TerminationStatus?, Never>) in
                let immediate = state.withLock { state -> TerminationStatus?? in
                    if let status = state.status { return .some(status) }
                    if state.cancelledBeforeRegistration.remove(id) != nil { return .some(nil) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<TerminationStatus?, Never>? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                if state.status == nil { state.cancelledBeforeRegistration.insert(id) }
                return nil
            }
            waiter?.resume(returning: nil)
        }
    }

    /// The watcher: runs once per child, until the child is reaped.
    private func watch() async {
        let pidfd = state.withLock { $0.pidfd }
        while true {
            if pidfd >= 0 {
                do {
                    try await Reactor.shared.wait(pidfd, for: .readable)
                } catch {
                    continue  // not cancelled in practice: detached and never handed out
                }
            } else {
                // No pidfd (descriptor exhaustion at spawn): poll instead.
                try? await Task.sleep(for: .milliseconds(50))
            }
            if let waitStatus = await reapLeader() {
                finish(waitStatus.map { TerminationStatus(waitStatus: $0) } ?? .exited(code: -1))
                return
            }
            if pidfd >= 0 {
                // Readable but not reapable yet: not expected; do not spin on a level-triggered poll.
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    /// If the leader has exited: sweeps the rest of its process group with SIGKILL and reaps the
    /// leader, then the members that are our children (reparented to us, the subreaper). Returns
    /// nil while the leader runs; otherwise its wait status (nil if it vanished without one:
    /// ECHILD), once its group is swept. No scan of /proc: the group is signalled while the
    /// leader's unreaped zombie pins its id (only this watcher reaps the leader), and its members
    /// are reaped by group (waitid P_PGID), which stays pinned while any member is left.
    private func reapLeader() async -> Int32?? {
        if adopted { return await leaderGone() }
        let pid = self.pid
        let reaped = state.withLock { state -> (status: Int32?, swept: Bool)? in
            // Exited? Seen without reaping it (WNOWAIT), so that its zombie still pins the group.
            var info = siginfo_t()  // si_signo stays 0 while it runs
            var seen = waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT)
            while seen == -1 && Errno.current == .interrupted {
                seen = waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT)
            }
            if seen == 0 && info.si_signo == 0 { return nil }  // running
            if seen == 0 { _ = kill(-pid, SIGKILL) }  // its stragglers (-1: ECHILD, not ours to reap)
            var waitStatus: Int32 = 0
            var result = waitpid(pid, &waitStatus, WNOHANG)
            while result == -1 && Errno.current == .interrupted { result = waitpid(pid, &waitStatus, WNOHANG) }
            if result == 0 { return nil }  // not reached: it was seen exited
            state.leaderReaped = true
            if state.pidfd >= 0 { _ = Glibc.close(state.pidfd) }
            state.pidfd = -1
            return (result == pid ? waitStatus : nil, seen == 0)
        }
        guard let reaped else { return nil }
        if reaped.swept { await ProcessReaper.reapChildren(ofGroup: pid) }
        return .some(reaped.status)
    }

    /// An adopted leader whose pidfd is readable has exited: its parent reaps it, not us, so the
    /// group id is no longer pinned; the members left (nginx workers) are killed one by one, each
    /// only if it runs our executable. Marked reaped under the lock first (no group signal after
    /// this), then the /proc scan runs on a blocking-work thread, and the killed members are
    /// awaited (and reaped where they are ours).
    private func leaderGone() async -> Int32?? {
        state.withLock { state in
            state.leaderReaped = true
            if state.pidfd >= 0 { _ = Glibc.close(state.pidfd) }
            state.pidfd = -1
        }
        let pid = self.pid, executable = self.executable
        let members = await BlockingWork.run { () -> [Int32] in
            var members: [Int32] = []
            for member in ProcessReaper.members(ofGroup: pid) where member != pid && ProcessReaper.executable(pid: member) == executable {
                if kill(member, SIGKILL) == 0 { members.append(member) }
            }
            return members
        }
        await ProcessReaper.reap(members: members, ofGroup: pid)
        return .some(nil)  // no status: its parent reaped it
    }

    private func finish(_ status: TerminationStatus) {
        let waiters = state.withLock { state -> [CheckedContinuation<TerminationStatus?, Never>] in
            state.status = status
            let waiters = Array(state.waiters.values)
            state.waiters.removeAll()
            state.cancelledBeforeRegistration.removeAll()
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }
}

/// Calls `body` with a NULL-terminated array of C strings that live for the duration of the call.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }  // safe: never empty (the nil terminator)
}
