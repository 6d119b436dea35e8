import Foundation
import Synchronization
import SciStreamWire
import SciStreamSystem

/// One decision of s2cs, as the audit log records it.
struct AuditEntry: Encodable {
    /// `request`, `hello`, `update`, `release`, `list`, `refused` (before any handling: a token or
    /// identity that did not pass), `expired`, `adopted`, `admin`.
    var event: String
    var client: String?
    /// The Globus username (or identity id) with authentication on; absent without.
    var identity: String?
    /// The uid's first 8 characters (the whole uid is the session's secret).
    var session: String?
    var role: String?
    var targets: [String]? = nil
    var ports: [UInt16]? = nil
    /// The status answered (`OK`, `PERMISSION_DENIED`, ...).
    var status: String? = nil
    var reason: String? = nil
    /// True when an operator acted (`--admin-identities`, or the local admin socket); absent otherwise.
    var admin: Bool? = nil
}

/// `s2cs --audit-log`: one JSON object per line for each decision (what a facility's security
/// officer asks for: who asked for what, from where, and what s2cs answered), appended to a file
/// of its own (0600, no symbolic link followed). Rotated like the session logs: past `limit` bytes
/// it becomes `<file>.1` (replacing an older one) and a new file starts.
final class AuditLog: Sendable {
    static let defaultLimit = 16 << 20
    /// What one field may hold: wire text is cut, never trusted to be short.
    static let fieldLimit = 256
    static let listLimit = 64

    let path: String
    private let limit: Int
    private let state: Mutex<(fd: Int32, size: Int)>
    private let logger: Logger

    init(path: String, limit: Int = AuditLog.defaultLimit, logger: Logger) throws(StartupError) {
        self.path = path
        self.limit = limit
        self.logger = logger
        let fd = Self.open(path)
        guard fd >= 0 else {
            throw StartupError("cannot open the audit log --audit-log \(path): \(Errno.current) (give a writable file, or --audit-log none)")
        }
        var info = stat()
        fstat(fd, &info)
        state = Mutex((fd, Int(info.st_size)))
    }

    deinit { state.withLock { _ = Glibc.close($0.fd) } }

    private static func open(_ path: String) -> Int32 {
        Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
    }

    func record(_ entry: AuditEntry, at date: Date = Date()) {
        var entry = entry
        entry.client = entry.client.map(Self.cut)
        entry.identity = entry.identity.map(Self.cut)
        entry.reason = entry.reason.map(Self.cut)
        entry.targets = entry.targets.map { Array($0.prefix(Self.listLimit)).map(Self.cut) }
        struct Line: Encodable {
            let time: String
            let entry: AuditEntry
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: Key.self)
                try container.encode(time, forKey: Key("time"))
                try entry.encode(to: encoder)
            }
            struct Key: CodingKey {
                var stringValue: String
                var intValue: Int? { nil }
                init(_ name: String) { stringValue = name }
                init?(stringValue: String) { self.stringValue = stringValue }
                init?(intValue: Int) { nil }
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(Line(time: Logger.timestamp(date), entry: entry)) else { return }
        var bytes = [UInt8](data)
        bytes.append(UInt8(ascii: "\n"))
        state.withLock { state in
            if state.size + bytes.count > limit { rotate(&state) }
            let written = bytes.withUnsafeBytes { write(state.fd, $0.baseAddress, $0.count) }
            if written == bytes.count {
                state.size += written
            } else {
                logger.error("cannot write the audit log", ["file": path, "error": Errno.current.description])
            }
        }
    }

    private func rotate(_ state: inout (fd: Int32, size: Int)) {
        guard rename(path, path + ".1") == 0 else { return }
        let fd = Self.open(path)
        guard fd >= 0 else { return }
        _ = Glibc.close(state.fd)
        state = (fd, 0)
    }

    private static func cut(_ text: String) -> String {
        text.utf8.count <= fieldLimit ? text : String(decoding: text.utf8.prefix(fieldLimit), as: UTF8.self) + "..."
    }

}

extension AuditEntry {
    /// The entry for a request message and the reply it got.
    init(_ message: Message, reply: Message, client: String, identity: String?) {
        let status = reply.replyStatus
        self.init(event: message.name, client: client, identity: identity, session: message.sessionUID.map(SessionID.shortPrefix),
                  role: message.sessionRole.map { "\($0)".uppercased() },
                  status: status.map { "\($0.code)" }, reason: status.flatMap { $0.isOK ? nil : $0.message })
        switch message {
        case .hello(let hello): targets = hello.prodListeners
        case .update(let update): targets = update.remoteListeners
        case .request(let request): ports = request.listenPorts.isEmpty ? nil : request.listenPorts.map { $0 }
        default: break
        }
        if case .requestReply(let answer) = reply, status?.isOK == true {
            ports = answer.listeners.compactMap { try? Endpoint.parse($0).port }
        }
    }
}

private extension Message {
    /// The uid a request names (as sent: the audit escapes it).
    var sessionUID: String? {
        switch self {
        case .request(let m): m.uid.text
        case .hello(let m): m.uid.text
        case .update(let m): m.uid.text
        case .release(let m): m.session.text
        default: nil
        }
    }

    var sessionRole: Role? {
        switch self {
        case .request(let m): m.role
        case .hello(let m): m.role
        case .update(let m): m.role
        default: nil
        }
    }

    /// The status a reply carries.
    var replyStatus: Status? {
        switch self {
        case .requestReply(let answer): answer.status
        case .helloReply(let status), .releaseReply(let status), .error(let status): status
        case .updateReply(let answer): answer.status
        case .listReply(let answer): answer.status
        default: nil
        }
    }
}
