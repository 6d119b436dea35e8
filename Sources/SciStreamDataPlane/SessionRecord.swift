import Foundation
import SciStreamWire
import SciStreamSystem

/// What a restarted s2cs needs to take a running session over: the session as the registry holds
/// it, and the proxy that serves it, named so that a pid reused by another program is never taken
/// for it (its start time since boot, its executable, its launch config). Written atomically to
/// `<uid>.session` (0600) once the proxy is ready; removed with the session's other files.
public struct SessionRecord: Codable, Sendable, Equatable {
    public static let currentVersion = 1

    public var version = SessionRecord.currentVersion
    public var uid: SessionID
    public var role: Role
    public var client: String
    public var owner: String?
    public var numConn: Int
    public var rate: Int
    public var ports: [UInt16]
    public var listeners: [String]
    public var prodListeners: [String]
    public var targets: [String]
    public var udp: Bool
    /// When the session was set up, seconds since the Unix epoch.
    public var created: Double
    public var proxy: Proxy?

    public struct Proxy: Codable, Sendable, Equatable {
        public var pid: Int32
        /// Clock ticks since boot (/proc/<pid>/stat field 22).
        public var startTime: UInt64
        public var executable: String
        public var config: String
    }

    public init(uid: SessionID, role: Role, client: String, owner: String?, numConn: Int, rate: Int, ports: [UInt16],
                listeners: [String], prodListeners: [String], targets: [String], udp: Bool, created: Double) {
        self.uid = uid
        self.role = role
        self.client = client
        self.owner = owner
        self.numConn = numConn
        self.rate = rate
        self.ports = ports
        self.listeners = listeners
        self.prodListeners = prodListeners
        self.targets = targets
        self.udp = udp
        self.created = created
    }
}

/// A session an earlier s2cs left running, taken over at start (`DataPlane.adoptSessions`): its
/// record, and its proxy, supervised from now on by whoever keeps the handle.
public struct AdoptedSession: Sendable {
    public let record: SessionRecord
    public let proxy: RunningProxy
}

extension DataPlane {
    /// Writes the record of a running session, with its proxy's identity; nothing for Mock (no
    /// proxy to keep) or a proxy that is not running. Returns whether it was written.
    @discardableResult
    public func persist(_ record: SessionRecord, proxy: RunningProxy) async -> Bool {
        guard record.uid == proxy.session, let child = proxy.child, child.status == nil,
              let startTime = ProcessReaper.startTime(pid: child.pid) else { return false }
        let session = proxy.session
        let files = SessionFiles(folder: folder, session: session)
        var record = record
        record.proxy = SessionRecord.Proxy(pid: child.pid, startTime: startTime, executable: child.executable, config: files.launchConfig)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(record) else { return false }
        let text = String(decoding: data, as: UTF8.self) + "\n"
        let logger = self.logger
        return await BlockingWork.run {
            do {
                try AtomicFile.write(text, to: files.record, display: files.display("session"))
                return true
            } catch {
                logger.warning("cannot write the session record: a restarted s2cs will not take this session over",
                               ["session": session.prefix, "error": "\(error)"])
                return false
            }
        }
    }

    /// At start, before `reapStale`: takes over every session whose record names a proxy that is
    /// still the one an earlier s2cs started: the same pid and start time, this data plane's
    /// executable, run with the session's launch config. Each comes back with its handle, and is
    /// supervised from now on as if started here (its output, which went to the earlier s2cs, is no
    /// longer captured); the others are left for `reapStale`, which stops what it can prove is ours
    /// and removes the files.
    public func adoptSessions() async -> [AdoptedSession] {
        guard type != .mock, let executable,
              let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        var adopted: [AdoptedSession] = []
        // /proc/<pid>/exe names the file itself: /usr/bin/stunnel is a link to stunnel4.
        let resolvedExecutable = realpath(executable, nil).map { pointer in
            defer { free(pointer) }
            return String(cString: pointer)
        } ?? executable
        for name in names.sorted() where name.hasSuffix(".session") && name.utf8.count == 36 + 8 {
            guard let session = SessionID(String(name.prefix(36))) else { continue }
            let files = SessionFiles(folder: folder, session: session)
            guard let bytes = ProcessReaper.readSmallFile(files.record, limit: 1 << 20),
                  let record = try? JSONDecoder().decode(SessionRecord.self, from: Data(bytes)),
                  record.version == SessionRecord.currentVersion, record.uid == session, let proxy = record.proxy else {
                logger.warning("session record unreadable: not taken over", ["session": session.prefix])
                continue
            }
            let why: String?
            if ProcessReaper.startTime(pid: proxy.pid) != proxy.startTime {
                why = "its proxy is gone (pid \(proxy.pid) is not the process recorded)"
            } else if proxy.executable != executable || ProcessReaper.executable(pid: proxy.pid) != resolvedExecutable {
                why = "its proxy is not this s2cs's \(executable)"
            } else if proxy.config != files.launchConfig || !(ProcessReaper.commandLine(pid: proxy.pid).map { Self.isProxy($0, using: files.launchConfig) } ?? false) {
                why = "its proxy does not run the session's config"
            } else {
                why = nil
            }
            if let why {
                logger.warning("session not taken over", ["session": session.prefix, "reason": why])
                continue
            }
            guard let child = ChildProcess.adopt(pid: proxy.pid, executable: executable) else {
                logger.warning("session not taken over", ["session": session.prefix, "reason": "its proxy exited meanwhile"])
                continue
            }
            logger.info("session taken over", ["session": session.prefix, "pid": String(proxy.pid), "role": "\(record.role)"])
            adopted.append(AdoptedSession(record: record, proxy: RunningProxy(session: session, child: child, log: nil)))
        }
        return adopted
    }
}
