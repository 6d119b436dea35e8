#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem
import SciStreamWire

/// What a session's proxy says about its traffic.
public struct TrafficFigures: Sendable, Equatable {
    public var counting: SessionTraffic.Counting
    public var openConnections = 0
    public var totalConnections = 0
    /// Received on the listeners and forwarded to the targets.
    public var bytesIn: UInt64 = 0
    /// From the targets, sent back out through the listeners.
    public var bytesOut: UInt64 = 0

    public init(counting: SessionTraffic.Counting) { self.counting = counting }
}

/// One session whose traffic is asked for: its id, its role, its listener ports, and how far its
/// proxy's log has been written.
public struct MeteredSession: Sendable {
    public let uid: SessionID
    public let role: ProxyRole
    public let listenerPorts: [UInt16]
    /// How many bytes the session's log has been appended (`SessionLog.appendedBytes`), which
    /// changes only when its proxy wrote something; nil: its proxy does not run (no figures).
    /// The caller tells it: the meter asks no one which proxies run.
    public var logMark: Int?

    public init(uid: SessionID, role: ProxyRole, listenerPorts: [UInt16], logMark: Int? = nil) {
        self.uid = uid
        self.role = role
        self.listenerPorts = listenerPorts
        self.logMark = logMark
    }
}

/// Reads each session's traffic from its proxy, when asked (`s2uc list`, `/metrics`), never on the
/// data path:
/// - HAProxy: `show stat` on the session's stats socket (`<uid>.sock`): the listeners' (frontends')
///   `scur`, `stot`, `bin`, `bout`, live;
/// - Nginx: the stream access log `<uid>.traffic`, one `$bytes_received,$bytes_sent` line per closed
///   connection;
/// - Stunnel: its log `<uid>.log`, `Service [..] accepted connection` and `Connection closed: A
///   byte(s) sent to TLS, B byte(s) sent to socket` (or `reset`) per connection.
/// Only lines the proxies write are read, by their exact format (TrafficMeter+Lines.swift): the same
/// logs carry text from outside, such as the subject of a client certificate a proxy refused.
/// Logs are read incrementally (only what was appended since the last time); a log that shrank was
/// cut short and is read again from its start, keeping what was counted. For Nginx and Stunnel the
/// connections open now are the established TCP connections on the listener ports (sock_diag).
///
/// What a request costs does not grow with idle sessions: one sock_diag dump for every session's
/// listener ports; a log is read only when s2cs appended to it since the last read (its `logMark`);
/// a HAProxy stats socket is asked only when the session has a connection open now, its log (a line
/// per connection that ended, `option tcplog`) grew, or it was never asked; at most
/// `statsParallelism` sockets at once. Otherwise its last figures stand: they cannot have changed
/// without a connection. Only a background task (`refreshStale`, not a request) asks again, a few at
/// a time, the sockets of idle sessions whose figures are older than `maxStatsAge`.
public actor TrafficMeter {
    private struct LogState: Sendable {
        /// The log file read so far (its inode): another one at the same path means a rotation.
        var inode: UInt64 = 0
        var offset: Int = 0
        var pending: [UInt8] = []
        var figures: TrafficFigures
        /// `SessionLog.appendedBytes` when last read (nil: never read).
        var mark: Int? = nil
        /// How many reads made this state (a read based on an older one is not kept).
        var reads = 0
    }

    private struct StatsState {
        var figures: TrafficFigures?
        var mark: Int
        var readAt: ContinuousClock.Instant
    }

    /// Per session.
    private var logs: [SessionID: LogState] = [:]
    private var stats: [SessionID: StatsState] = [:]
    /// At most this much of a log is read per call (the rest next time).
    static let maxReadPerCall = 16 << 20
    /// HAProxy stats sockets asked at once.
    static let statsParallelism = 8
    /// Figures of an idle HAProxy session older than this are read again by `refreshStale`, at most
    /// `staleRefreshesPerCall` sessions per call.
    public static let maxStatsAge: Duration = .seconds(30)
    static let staleRefreshesPerCall = 8

    public init() {}

    /// The traffic of each of `sessions` (in their order; nil: its proxy does not run or has no
    /// figures), as the proxies of `type` whose files are in `folder` count it. `fresh`: ask every
    /// HAProxy stats socket now (a session's last figures, at its release).
    /// Per session and request, a session whose log did not grow costs a lookup of what was read
    /// before; only the socket dump is one question to the kernel for all.
    public func figures(for sessions: [MeteredSession], type: DataServerType, folder: String, fresh: Bool = false) async -> [TrafficFigures?] {
        var result = [TrafficFigures?](repeating: nil, count: sessions.count)
        guard type != .mock else { return result }
        var ports: Set<UInt16> = []
        for session in sessions where session.logMark != nil { ports.formUnion(session.listenerPorts) }
        guard !ports.isEmpty else { return result }
        // The logs that grew since they were last read (Nginx, Stunnel); those that did not cost a lookup.
        var due: [(index: Int, session: MeteredSession, base: LogState?)] = []
        if type == .nginx || type == .stunnel {
            for (index, session) in sessions.enumerated() where session.logMark != nil {
                if let state = logs[session.uid], state.mark == session.logMark {
                    result[index] = state.figures
                } else {
                    due.append((index, session, logs[session.uid]))
                }
            }
        }
        // The socket dump and the log reads are blocking system calls: off the cooperative pool, in one go.
        let (reading, listenerPorts) = (due, ports)
        let (open, read) = await BlockingWork.run {
            (Self.establishedConnections(localPorts: listenerPorts),
             reading.map { Self.readLog(of: $0.session, type: type, folder: folder, from: $0.base) })
        }
        for (entry, state) in zip(due, read) {
            result[entry.index] = state?.figures
            // Kept unless another request stored a newer read of this log meanwhile (its lines must
            // not be counted twice).
            guard let state, logs[entry.session.uid]?.reads ?? 0 == entry.base?.reads ?? 0 else { continue }
            logs[entry.session.uid] = state
        }
        func openNow(_ session: MeteredSession) -> Int {
            open.isEmpty ? 0 : session.listenerPorts.reduce(0) { $0.addingSaturating(open[$1] ?? 0) }
        }
        switch type {
        case .haproxy:
            var due: [MeteredSession] = []
            for session in sessions where session.logMark != nil {
                guard let state = stats[session.uid] else { due.append(session); continue }
                if fresh || state.mark != session.logMark || openNow(session) > 0 || state.figures == nil {
                    due.append(session)
                }
            }
            await readStats(due, folder: folder)
            for (index, session) in sessions.enumerated() where session.logMark != nil { result[index] = stats[session.uid]?.figures }
        case .nginx:
            // Its access log lines are in <uid>.log (nginx writes them to stderr, which s2cs captures).
            for (index, session) in sessions.enumerated() where session.logMark != nil {
                guard var figures = result[index] else { continue }
                figures.openConnections = openNow(session)
                figures.totalConnections = figures.totalConnections.addingSaturating(figures.openConnections)
                result[index] = figures
            }
        case .stunnel:
            for (index, session) in sessions.enumerated() where session.logMark != nil {
                result[index]?.openConnections = openNow(session)
            }
        case .mock:
            break
        }
        return result
    }

    /// Asks again the HAProxy stats sockets of at most `staleRefreshesPerCall` of `sessions` (those
    /// whose proxies run) whose figures are older than `maxStatsAge`, the stalest first. For a
    /// background task: a request never waits for it.
    public func refreshStale(_ sessions: [MeteredSession], type: DataServerType, folder: String) async {
        guard type == .haproxy else { return }
        let now = ContinuousClock.now
        var stale: [(MeteredSession, ContinuousClock.Instant)] = []
        for session in sessions where session.logMark != nil {
            if let state = stats[session.uid], now - state.readAt > Self.maxStatsAge { stale.append((session, state.readAt)) }
        }
        await readStats(stale.sorted { $0.1 < $1.1 }.prefix(Self.staleRefreshesPerCall).map(\.0), folder: folder)
    }

    /// Reads the stats sockets of `sessions` and keeps their figures.
    private func readStats(_ sessions: [MeteredSession], folder: String) async {
        guard !sessions.isEmpty else { return }
        let now = ContinuousClock.now
        let read = await Self.haproxyStats(sessions.map { ($0.uid, SessionFiles(folder: folder, session: $0.uid).statsSocket) })
        for session in sessions {
            // The mark from before the read: a line logged meanwhile makes the next request read again.
            stats[session.uid] = StatsState(figures: read[session.uid], mark: session.logMark ?? 0, readAt: now)
        }
    }

    /// Forgets the sessions that are gone (call with the uids that remain).
    public func keep(only uids: Set<SessionID>) {
        logs = logs.filter { uids.contains($0.key) }
        stats = stats.filter { uids.contains($0.key) }
    }

    // MARK: logs

    /// What `session`'s log gained since `base` (the state of its last read; nil: never read), line
    /// by line, added to the figures read before; nil when the session is not of a type whose log
    /// counts. A log found shorter than what was read was rotated (`SessionLog`): the rest of its old
    /// part, `<uid>.log.1`, is read first, then the new one from its start. Blocking: called on
    /// `BlockingWork`, with no state of the meter's.
    private static func readLog(of session: MeteredSession, type: DataServerType, folder: String, from base: LogState?) -> LogState? {
        let parse: (Substring, inout TrafficFigures) -> Void
        switch type {
        case .nginx: parse = Self.nginxLine
        case .stunnel:
            let role = session.role
            parse = { line, figures in Self.stunnelLine(line, role: role, &figures) }
        case .haproxy, .mock: return nil
        }
        var state = base ?? LogState(figures: TrafficFigures(counting: .closedConnections))
        state.reads &+= 1
        let files = SessionFiles(folder: folder, session: session.uid)
        let fd = open(files.log, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return state }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return state }
        if (state.inode != 0 && UInt64(info.st_ino) != state.inode) || Int(info.st_size) < state.offset {
            // Rotated (or cut short): finish the old file if it is <uid>.log.1 now, then the new one from its start.
            let rotated = open(files.rotatedLog, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            if rotated >= 0 {
                var old = stat()
                if fstat(rotated, &old) == 0 && UInt64(old.st_ino) == state.inode {
                    Self.readLines(rotated, into: &state, budget: Self.maxReadPerCall, parse: parse)
                }
                close(rotated)
            }
            state.offset = 0
            state.pending = []
        }
        state.inode = UInt64(info.st_ino)
        Self.readLines(fd, into: &state, budget: Self.maxReadPerCall, parse: parse)
        // Seen only if read to its end: a log with more than the budget left is read on next time.
        var after = stat()
        state.mark = fstat(fd, &after) == 0 && Int(after.st_size) <= state.offset ? session.logMark : nil
        return state
    }

    /// Reads `fd` from `state.offset` on (at most `budget` bytes) and parses its whole lines.
    private static func readLines(_ fd: Int32, into state: inout LogState, budget: Int,
                                  parse: (Substring, inout TrafficFigures) -> Void) {
        var budget = budget
        var buffer = [UInt8](repeating: 0, count: 65536)
        while budget > 0 {
            let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, min($0.count, budget), off_t(state.offset)) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            state.offset += count
            budget -= count
            state.pending += buffer[0..<count]
            // Whole lines only; a partial last line waits for the rest.
            guard let lastNewline = state.pending.lastIndex(of: UInt8(ascii: "\n")) else { continue }
            let text = String(decoding: state.pending[...lastNewline], as: UTF8.self)
            for line in text.split(separator: "\n") { parse(line, &state.figures) }
            state.pending.removeSubrange(...lastNewline)
            if state.pending.count > 65536 { state.pending = [] }  // not a log line of ours
        }
    }

    // MARK: HAProxy

    /// `show stat` on HAProxy's stats socket: the sum over its frontends (the listeners).
    static func haproxyStats(_ path: String) async -> TrafficFigures? {
        guard let csv = await unixExchange(path, "show stat\n") else { return nil }
        return parseHAProxyStats(csv)
    }

    /// `haproxyStats` of each (uid, socket path), at most `statsParallelism` at once.
    static func haproxyStats(_ sockets: [(uid: SessionID, path: String)]) async -> [SessionID: TrafficFigures] {
        await withTaskGroup(of: (SessionID, TrafficFigures?).self) { group in
            var result: [SessionID: TrafficFigures] = [:]
            var next = sockets.makeIterator()
            for _ in 0..<statsParallelism {
                guard let (uid, path) = next.next() else { break }
                group.addTask { (uid, await haproxyStats(path)) }
            }
            while let (uid, figures) = await group.next() {
                if let figures { result[uid] = figures }
                if let (uid, path) = next.next() { group.addTask { (uid, await haproxyStats(path)) } }
            }
            return result
        }
    }

    static func parseHAProxyStats(_ csv: String) -> TrafficFigures? {
        let lines = csv.split(separator: "\n")
        guard let header = lines.first, header.hasPrefix("# ") else { return nil }
        let names = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard let sv = names.firstIndex(of: "svname"), let scur = names.firstIndex(of: "scur"), let stot = names.firstIndex(of: "stot"),
              let bin = names.firstIndex(of: "bin"), let bout = names.firstIndex(of: "bout") else { return nil }
        var figures = TrafficFigures(counting: .live)
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count > max(sv, scur, stot, bin, bout), fields[sv] == "FRONTEND" else { continue }
            figures.openConnections = figures.openConnections.addingSaturating(Int(clamping: statField(fields[scur]) ?? 0))
            figures.totalConnections = figures.totalConnections.addingSaturating(Int(clamping: statField(fields[stot]) ?? 0))
            figures.addBytes(in: statField(fields[bin]) ?? 0, out: statField(fields[bout]) ?? 0)
        }
        return figures
    }

    /// Sends `command` on the unix socket at `path` and reads the answer until the peer closes
    /// (non-blocking, through the reactor, at most 2 s).
    static func unixExchange(_ path: String, _ command: String) async -> String? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return nil }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let socket = Socket(adopting: fd)
        defer { socket.close() }
        // A local stream socket connects at once or not at all (EAGAIN: its backlog is full; try next time).
        guard connected == 0 else { return nil }
        let deadline = ContinuousClock.now + .seconds(2)
        do {
            try await socket.writeAll(Array(command.utf8), deadline: deadline)
            var answer: [UInt8] = []
            while answer.count < 4 << 20 {
                let chunk = try await socket.read(max: 65536, deadline: deadline)
                if chunk.isEmpty { break }
                answer += chunk
            }
            return String(decoding: answer, as: UTF8.self)
        } catch {
            return nil
        }
    }

    // MARK: open connections

    /// Established TCP connections per local port, for the ports of `localPorts` (the listeners'
    /// accepted connections): one question to the kernel for all of them, that state and the span of
    /// those ports only (sock_diag).
    static func establishedConnections(localPorts: Set<UInt16>) -> [UInt16: Int] {
        guard let low = localPorts.min(), let high = localPorts.max(),
              let sockets = try? TCPSocket.find([.established], ports: low...high) else { return [:] }
        var counts: [UInt16: Int] = [:]
        for socket in sockets where localPorts.contains(socket.port) { counts[socket.port, default: 0] += 1 }
        return counts
    }
}
