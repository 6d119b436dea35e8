#if canImport(Glibc)
import Glibc
#endif
import SciStreamWire
import SciStreamDataPlane

/// What s2cs needs of the kernel's per-process limits for its `--port-range`, checked at start:
/// every port of the range may be a session with its own proxy.
/// - Open files (RLIMIT_NOFILE) of s2cs: per session the proxy's output pipe, its log file and its
///   pidfd, and a control connection while it is set up; plus s2cs's own (listeners, the reactor,
///   clients). The proxies inherit the limit (each needs only its own listeners and connections).
/// - Processes and threads (RLIMIT_NPROC, counted per user): a proxy's master and workers or
///   threads. Not enforced for root.
/// The soft limits are raised as far as needed and the hard limits allow; a hard limit too low for
/// the range is a start-up error that names the limit and how to raise it.
struct ResourceNeeds: Equatable {
    static let descriptorsPerSession = 4
    static let baseDescriptors = 256
    static let baseTasks = 64

    /// Sessions the range can hold (one port each, at least).
    let sessions: Int
    let descriptors: Int
    let tasks: Int

    init(portRange: PortRange, type: DataServerType, processors: Int) {
        sessions = Int(portRange.upper) - Int(portRange.lower) + 1
        // Mock starts nothing: its sessions hold no descriptor once set up.
        descriptors = Self.baseDescriptors + (type == .mock ? 0 : sessions * Self.descriptorsPerSession)
        tasks = Self.baseTasks + sessions * Self.tasksPerSession(type, processors: processors)
    }

    /// A session's proxy with one listener: HAProxy a master and a worker with one thread per CPU
    /// (`nbthread`), nginx a master and a worker, stunnel one process (and a thread per connection,
    /// which no start-up check can bound); Mock starts nothing.
    static func tasksPerSession(_ type: DataServerType, processors: Int) -> Int {
        switch type {
        case .haproxy: 1 + max(1, min(processors, 64))
        case .nginx, .stunnel: 2
        case .mock: 0
        }
    }
}

/// A limit as `getrlimit` gives it (RLIM_INFINITY as nil).
struct ResourceLimit: Equatable {
    var soft: UInt64?
    var hard: UInt64?

    func allows(_ count: Int) -> Bool { soft.map { $0 >= UInt64(count) } ?? true }
    func mayAllow(_ count: Int) -> Bool { hard.map { $0 >= UInt64(count) } ?? true }
}

enum LimitCheck {
    /// The outcome for one limit: fine as it is, the soft limit raised to `to`, or too low.
    enum Outcome: Equatable {
        case enough
        case raise(to: UInt64)
        case tooLow(String)
    }

    /// Open files: `need` against `limit`, worded for `--port-range range`.
    static func descriptors(need: ResourceNeeds, limit: ResourceLimit, range: PortRange) -> Outcome {
        if limit.allows(need.descriptors) { return .enough }
        if limit.mayAllow(need.descriptors) { return .raise(to: UInt64(need.descriptors)) }
        return .tooLow("--port-range \(range) holds up to \(need.sessions) sessions, which need about \(need.descriptors) open files, and s2cs may open only \(limit.hard.map(String.init) ?? "?") (RLIMIT_NOFILE, hard limit): raise it (systemd: LimitNOFILE=\(need.descriptors) or more; a shell: ulimit -n \(need.descriptors), its hard limit raised by root or in /etc/security/limits.conf; a container: the runtime's nofile ulimit), or give a smaller --port-range")
    }

    /// Processes and threads of this user: `need` against `limit`; root is not limited.
    static func tasks(need: ResourceNeeds, limit: ResourceLimit, range: PortRange, type: DataServerType, isRoot: Bool) -> Outcome {
        if isRoot || limit.allows(need.tasks) { return .enough }
        if limit.mayAllow(need.tasks) { return .raise(to: UInt64(need.tasks)) }
        return .tooLow("--port-range \(range) holds up to \(need.sessions) \(type.name) sessions, whose proxies run about \(need.tasks) processes and threads, and this user may run only \(limit.hard.map(String.init) ?? "?") (RLIMIT_NPROC, hard limit): raise it (systemd: LimitNPROC= and TasksMax= of \(need.tasks) or more; a shell: ulimit -u \(need.tasks), its hard limit raised by root or in /etc/security/limits.conf), or give a smaller --port-range")
    }

    static func current(_ resource: Int32) -> ResourceLimit? {
        var value = rlimit()
        guard getrlimit(resource, &value) == 0 else { return nil }
        // RLIM_INFINITY is all ones.
        func finite(_ raw: rlim_t) -> UInt64? { raw == rlim_t.max ? nil : UInt64(raw) }
        return ResourceLimit(soft: finite(value.rlim_cur), hard: finite(value.rlim_max))
    }

    /// Sets the soft limit of `resource` to `soft` (the hard one stays); false if refused.
    static func raise(_ resource: Int32, to soft: UInt64) -> Bool {
        var value = rlimit()
        guard getrlimit(resource, &value) == 0 else { return false }
        value.rlim_cur = rlim_t(soft)
        return setrlimit(resource, &value) == 0
    }

    /// Checks and raises both limits for `range`; the message of the first that is too low, or nil.
    /// `raised` hears of each soft limit raised: (resource name, from, to).
    static func apply(range: PortRange, type: DataServerType, processors: Int, isRoot: Bool,
                      raised: (String, String, UInt64) -> Void) -> String? {
        let need = ResourceNeeds(portRange: range, type: type, processors: processors)
        let checks: [(Int32, String, (ResourceLimit) -> Outcome)] = [
            (Int32(RLIMIT_NOFILE.rawValue), "RLIMIT_NOFILE", { descriptors(need: need, limit: $0, range: range) }),
            (Int32(__RLIMIT_NPROC.rawValue), "RLIMIT_NPROC", { tasks(need: need, limit: $0, range: range, type: type, isRoot: isRoot) }),
        ]
        for (resource, name, check) in checks {
            guard let limit = current(resource) else { continue }
            switch check(limit) {
            case .enough: continue
            case .raise(let soft):
                if raise(resource, to: soft) { raised(name, limit.soft.map(String.init) ?? "unlimited", soft) }
            case .tooLow(let message):
                return message
            }
        }
        return nil
    }
}
