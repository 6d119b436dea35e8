#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import Synchronization
import SciStreamSystem

/// A session proxy's output (its stdout and stderr; nginx's `error_log` goes to stderr too), read
/// by s2cs from a pipe and appended to `<uid>.log`, which is bounded: when the next chunk would take
/// it past `limit` bytes, it becomes `<uid>.log.1` (replacing an older one) and a new `<uid>.log`
/// starts. A session's logs take at most about twice `limit`, however many failed handshakes
/// strangers cause. The newest lines are always in `<uid>.log`.
///
/// Reading ends at end-of-file, which comes once every process of the proxy's group has exited
/// (they all hold the pipe's write end), or when `finish(within:)` gives up waiting for it.
final class SessionLog: Sendable {
    /// The size at which `<uid>.log` is rotated to `<uid>.log.1`.
    static let defaultLimit = 1 << 20
    /// How much of this run's output is kept in memory, for the error summary of a failed start.
    static let recentLimit = 64 << 10
    private static let chunkSize = 16 << 10

    /// The child's end of the pipe: pass it to `ChildProcess.spawn`, then call `closeChildEnd()`.
    let childEnd: Int32

    private struct State {
        var childEndOpen = true
        var recent: [UInt8] = []
        var reader: Task<Void, Never>?
    }

    private let state: Mutex<State>
    /// Bytes appended to the log so far (across rotations): a reader that saw this figure has
    /// nothing new to read while it stays the same (TrafficMeter).
    private let appended = Atomic<Int>(0)
    private let readEnd: Int32
    private let path: String
    private let rotatedPath: String
    private let limit: Int

    /// Opens `files.log` for appending (0600, no symbolic link) and makes the pipe. Reading starts at once.
    init(_ files: SessionFiles, limit: Int = SessionLog.defaultLimit) throws(DataPlaneError) {
        self.path = files.log
        self.rotatedPath = files.rotatedLog
        self.limit = max(limit, Self.chunkSize)
        let ends: (read: Int32, write: Int32)
        do {
            ends = try ChildProcess.outputPipe()
        } catch {
            throw .file(path: files.display("log"), reason: "cannot make a pipe: \(error)")
        }
        let logFD = Self.openLog(path)
        guard logFD >= 0 else {
            let error = Errno.current
            _ = close(ends.read)
            _ = close(ends.write)
            throw .file(path: files.display("log"), reason: error.description)
        }
        readEnd = ends.read
        childEnd = ends.write
        state = Mutex(State())
        let reader = Task.detached { [self] in await self.copy(to: logFD) }
        state.withLock { $0.reader = reader }
    }

    private static func openLog(_ path: String) -> Int32 {
        open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0o600)
    }

    /// Closes s2cs's copy of the child's end once the child has it (or could not be started), so
    /// that end-of-file comes when the proxy's processes are gone.
    func closeChildEnd() {
        let open = state.withLock { state -> Bool in
            defer { state.childEndOpen = false }
            return state.childEndOpen
        }
        if open { _ = close(childEnd) }
    }

    /// How many bytes this log has been appended since it was opened; it changes after the bytes are
    /// in the file.
    var appendedBytes: Int { appended.load(ordering: .acquiring) }

    /// What the proxy wrote since this log was opened (its last `recentLimit` bytes).
    var recentText: String { String(decoding: state.withLock { $0.recent }, as: UTF8.self) }

    /// Waits for end-of-file (every process of the proxy gone) for at most `timeout`, then stops
    /// reading (after taking what the pipe already holds) and closes the files.
    func finish(within timeout: Duration) async {
        closeChildEnd()
        guard let reader = state.withLock({ $0.reader }) else { return }
        let ended = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await reader.value; return true }
            group.addTask { try? await Task.sleep(for: timeout); return false }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !ended {
            reader.cancel()
            await reader.value
        }
    }

    private func copy(to initialFD: Int32) async {
        var logFD = initialFD
        var size = ProxyLog.size(path)
        var buffer = [UInt8](repeating: 0, count: Self.chunkSize)
        defer {
            _ = close(readEnd)
            if logFD >= 0 { _ = close(logFD) }
        }
        while true {
            let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if count == 0 { return }
            if count < 0 {
                let error = Errno.current
                if error == .interrupted { continue }
                guard error == .wouldBlock, !Task.isCancelled else { return }
                do { try await Reactor.shared.wait(readEnd, for: .readable) } catch { continue }  // cancelled: drain, then end
                continue
            }
            let chunk = buffer[0..<count]
            state.withLock { state in
                state.recent.append(contentsOf: chunk)
                if state.recent.count > Self.recentLimit { state.recent.removeFirst(state.recent.count - Self.recentLimit) }
            }
            if size > 0 && size + count > limit {
                // Rotate: the older part goes to <uid>.log.1, replacing the one before it.
                if logFD >= 0 { _ = close(logFD) }
                _ = rename(path, rotatedPath)
                logFD = Self.openLog(path)
                size = 0
            }
            guard logFD >= 0 else { continue }  // the folder went away: keep draining the pipe
            var offset = 0
            while offset < count {
                let written = buffer.withUnsafeBytes { write(logFD, $0.baseAddress! + offset, count - offset) }  // safe: offset < count
                if written < 0 {
                    if Errno.current == .interrupted { continue }
                    break  // a full disk: the line is lost, the proxy is not held up
                }
                offset += written
            }
            size += offset
            appended.add(count, ordering: .releasing)  // the lines are in the file: readers may look
        }
    }

    // MARK: - pruning

    /// How long the logs of released sessions are kept.
    static let retention: Duration = .seconds(7 * 24 * 3600)
    /// How many released sessions' logs are kept at most (the newest).
    static let maximumKept = 200

    /// Removes the logs (`<uid>.log`, `<uid>.log.1`) of sessions that are not running: those last
    /// written more than `retention` ago, then the oldest beyond the newest `maximumKept`. A session
    /// with a `<uid>.conf` in the folder keeps its logs: its proxy runs (ours, another s2cs's, or a
    /// crashed one's that `reapStale` has not handled), or is being started (the config is written
    /// before the log is opened). Returns how many sessions' logs were removed.
    @discardableResult
    static func prune(folder: String, now: Date = Date(), retention: Duration = retention,
                      maximumKept: Int = maximumKept) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return 0 }
        let present = Set(names)
        var newest: [String: Double] = [:]
        for name in names {
            let stem = String(name.prefix(36))
            guard name.utf8.count > 37, let session = SessionID(stem), name.dropFirst(36).first == "." else { continue }
            let rest = name.dropFirst(37)
            guard rest == "log" || rest == "log.1" else { continue }
            guard !present.contains(session.text + ".conf") else { continue }
            var info = stat()
            guard lstat(folder + "/" + name, &info) == 0 else { continue }
            let modified = Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9
            newest[stem] = max(newest[stem] ?? 0, modified)
        }
        let cutoff = now.timeIntervalSince1970 - Double(retention.components.seconds)
        let byAge = newest.sorted { $0.value > $1.value }
        var removed = 0
        for (index, entry) in byAge.enumerated() where entry.value < cutoff || index >= maximumKept {
            for ext in ["log", "log.1"] { AtomicFile.remove("\(folder)/\(entry.key).\(ext)") }
            removed += 1
        }
        return removed
    }
}
