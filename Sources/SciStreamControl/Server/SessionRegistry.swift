import SciStreamWire
import SciStreamSystem
import SciStreamDataPlane

/// The sessions of one s2cs, and the ports they hold. An actor: every state change happens here,
/// none of it blocks, and a pending request waits on a continuation, not on a thread.
actor SessionRegistry {
    enum State: Equatable {
        case pending      // request received, waiting for its hello
        case ready        // hello received, waiting for update
        case starting     // update in progress: the proxy is starting
        case active       // proxy up (or Mock)
        case failed(String)
        case releasing
    }

    struct Session {
        let uid: String
        let role: Role
        /// The address of the client that requested it (sessions per client are capped).
        let client: String
        let numConn: Int
        let rate: Int
        let ports: [UInt16]
        let listeners: [Endpoint]
        var prodListeners: [String] = []
        var targets: [Endpoint] = []
        var state: State = .pending
        var helloWaiter: CheckedContinuation<[String], any Error>? = nil
        var expiry: Task<Void, Never>? = nil
        var startTask: Task<Void, any Error>? = nil
        /// When the request arrived (the age in `list`).
        var created = ContinuousClock.now
    }

    private var sessions: [String: Session] = [:]
    private var sessionsByClient: [String: Int] = [:]
    private let maxSessionsPerClient: Int
    private var allocator: PortAllocator
    private let listenerIP: String
    /// This s2cs forwards plain TCP between gateways (`--data-plane-tls=False`): its listeners are
    /// reported as `tcp://host:port`.
    let plaintextDataPlane: Bool
    private let helloTimeout: Duration
    private let earlyHelloWait: Duration
    private var helloWatchers: [String: [UInt64: CheckedContinuation<Bool, Never>]] = [:]
    private var nextWatcherID: UInt64 = 0
    private var shuttingDown = false
    private let dataPlane: DataPlane
    private let logger: Logger
    static let maxConnectionsPerSession = SessionLimits.maxConnectionsPerSession

    init(config: ServerConfiguration, dataPlane: DataPlane, logger: Logger) {
        self.allocator = PortAllocator(range: config.portRange)
        self.listenerIP = config.listenerIP
        self.maxSessionsPerClient = config.maxSessionsPerClient
        self.plaintextDataPlane = !config.dataPlaneTLS
        self.helloTimeout = config.helloTimeout
        self.earlyHelloWait = min(config.helloTimeout, .seconds(10))
        self.dataPlane = dataPlane
        self.logger = logger
    }

    // MARK: request

    /// Registers the session, reserves its ports, then waits for its hello. Returns the reply.
    func request(_ request: Request, client: String) async throws(StatusError) -> RequestReply {
        do {
            try admit(request, client: client)
        } catch {
            // A hello for this uid may be on its way: tell it at once why the request failed.
            if let uid = try? SessionID.validate(request.uid), sessions[uid] == nil {
                rememberFailure(uid, error.status)
                wakeHelloWatchers(uid, found: false)
            }
            throw error
        }
        return try await awaitHello(request.uid.lowercased())
    }

    /// Failed requests of the last moments, so that their hellos fail at once with the same reason.
    private var recentFailures: [String: Status] = [:]
    private var recentFailureOrder: [String] = []

    private func rememberFailure(_ uid: String, _ status: Status) {
        if recentFailures[uid] == nil { recentFailureOrder.append(uid) }
        recentFailures[uid] = status
        if recentFailureOrder.count > 1024 {
            recentFailures[recentFailureOrder.removeFirst()] = nil
        }
    }

    private func admit(_ request: Request, client: String) throws(StatusError) {
        guard !shuttingDown else { throw StatusError(.unavailable, "s2cs is shutting down") }
        let uid = try Self.validUID(request.uid)
        guard sessions[uid] == nil else {
            throw StatusError(.alreadyExists, "session \(SessionID.shortPrefix(uid)) already exists on this s2cs: use a new uid, or release it first")
        }
        let held = sessionsByClient[client, default: 0]
        guard held < maxSessionsPerClient else {
            throw StatusError(.resourceExhausted, "client \(client) already holds \(held) sessions on this s2cs, the most allowed (--max-sessions-per-client \(maxSessionsPerClient)): release some first")
        }
        let limit = Self.maxConnectionsPerSession
        guard request.numConn >= 1, request.numConn <= limit else {
            throw StatusError(.invalidArgument, "num_conn \(request.numConn) is out of range: use 1 to \(limit)")
        }
        let ports: [UInt16]
        let ip = listenerIP
        let isFree: (UInt16) -> Bool = { Socket.canBind(host: ip, port: $0) }
        if request.listenPorts.isEmpty {
            guard let allocated = allocator.allocate(count: Int(request.numConn), isFree: isFree) else {
                throw StatusError(.resourceExhausted,
                    "no \(request.numConn) free port\(request.numConn == 1 ? "" : "s") left in --port-range \(allocator.range) (\(allocator.freeCount) unreserved, some may be in use by other processes): release sessions or widen the range")
            }
            ports = allocated
        } else {
            if let taken = allocator.reserve(request.listenPorts, isFree: isFree) {
                throw StatusError(.resourceExhausted, "port \(taken) on \(ip) is already in use: choose other --receiver_ports or stop what uses it")
            }
            ports = request.listenPorts
        }
        var session = Session(uid: uid, role: request.role, client: client, numConn: ports.count, rate: Int(request.rate),
                              ports: ports, listeners: ports.map { Endpoint(host: ip, port: $0) })
        let timeout = helloTimeout
        session.expiry = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            if Task.isCancelled { return }
            await self?.expire(uid)
        }
        sessions[uid] = session
        sessionsByClient[client, default: 0] += 1
        recentFailures[uid] = nil
        logger.debug("session requested", ["session": SessionID.shortPrefix(uid), "role": "\(request.role)", "ports": ports.map(String.init).joined(separator: ",")])
        wakeHelloWatchers(uid, found: true)
    }

    private func awaitHello(_ uid: String) async throws(StatusError) -> RequestReply {
        let prodListeners: [String]
        do {
            prodListeners = try await withCheckedThrowingContinuation { continuation in
                sessions[uid]?.helloWaiter = continuation
            }
        } catch let error as StatusError {
            throw error
        } catch {
            throw StatusError(.internalError, "\(error)")
        }
        guard let current = sessions[uid] else {
            throw StatusError(.unavailable, "session \(SessionID.shortPrefix(uid)) was released before it was set up")
        }
        return RequestReply(status: .ok, listeners: reported(current.listeners, role: current.role), prodListeners: prodListeners)
    }

    /// How this s2cs reports a session's listeners: a producer-side s2cs that forwards plain TCP
    /// between gateways says so with `tcp://` (the consumer-side s2cs checks it); consumer-side
    /// listeners are where the consumer application connects, plain TCP in every mode.
    nonisolated func reported(_ listeners: [Endpoint], role: Role) -> [String] {
        listeners.map { GatewayListener($0, plaintext: plaintextDataPlane && role == .prod).description }
    }

    // MARK: hello

    func hello(_ hello: Hello) async throws(StatusError) {
        let uid = try Self.validUID(hello.uid)
        var targets: [String] = []
        for text in hello.prodListeners {
            // PROD: the producer application's addresses; CONS: the producer-side gateway's listeners.
            do { targets.append(hello.role == .cons ? try GatewayListener.parse(text).description : try Endpoint.parse(text).description) }
            catch { throw StatusError(.invalidArgument, "bad producer listener in hello: \(error)") }
        }
        if sessions[uid] == nil {
            // The hello may overtake its request on another connection: wait a little for it.
            let found = recentFailures[uid] == nil ? await waitForSession(uid) : false
            if let failure = recentFailures[uid] {
                throw StatusError(failure.code, "the request for session \(SessionID.shortPrefix(uid)) failed: \(failure.message)")
            }
            guard found else {
                throw StatusError(.notFound, "no pending request for session \(SessionID.shortPrefix(uid)) on this s2cs: send the request first (s2uc does)")
            }
        }
        guard var session = sessions[uid] else {
            throw StatusError(.notFound, "session \(SessionID.shortPrefix(uid)) was released")
        }
        guard session.role == hello.role else {
            throw StatusError(.invalidArgument, "hello role \(hello.role) does not match session \(SessionID.shortPrefix(uid)) role \(session.role)")
        }
        guard session.state == .pending, let waiter = session.helloWaiter else {
            throw StatusError(.alreadyExists, "session \(SessionID.shortPrefix(uid)) already received its hello")
        }
        session.helloWaiter = nil
        session.prodListeners = targets
        session.state = .ready
        sessions[uid] = session
        waiter.resume(returning: targets)
    }

    private func waitForSession(_ uid: String) async -> Bool {
        nextWatcherID &+= 1
        let id = nextWatcherID
        let wait = earlyHelloWait
        let timer = Task { [weak self] in
            try? await Task.sleep(for: wait)
            await self?.dropHelloWatcher(uid, id)
        }
        let found = await withCheckedContinuation { continuation in
            helloWatchers[uid, default: [:]][id] = continuation
        }
        timer.cancel()
        return found
    }

    private func dropHelloWatcher(_ uid: String, _ id: UInt64) {
        if let continuation = helloWatchers[uid]?.removeValue(forKey: id) {
            continuation.resume(returning: false)
        }
        if helloWatchers[uid]?.isEmpty == true { helloWatchers[uid] = nil }
    }

    private func wakeHelloWatchers(_ uid: String, found: Bool) {
        guard let watchers = helloWatchers.removeValue(forKey: uid) else { return }
        for continuation in watchers.values { continuation.resume(returning: found) }
    }

    // MARK: update

    /// Points the session's listeners at `remoteListeners` and starts (or restarts) its proxy.
    func beginUpdate(_ update: Update) throws(StatusError) -> (Task<Void, any Error>, [Endpoint]) {
        let uid = try Self.validUID(update.uid)
        guard var session = sessions[uid] else {
            throw StatusError(.notFound, "no session \(SessionID.shortPrefix(uid)) on this s2cs: check the uid and the --s2cs address")
        }
        guard session.role == update.role else {
            throw StatusError(.invalidArgument, "update role \(update.role) does not match session \(SessionID.shortPrefix(uid)) role \(session.role)")
        }
        switch session.state {
        case .pending:
            throw StatusError(.invalidArgument, "session \(SessionID.shortPrefix(uid)) has not received its hello yet")
        case .starting:
            throw StatusError(.unavailable, "session \(SessionID.shortPrefix(uid)) is already being updated: retry when that finishes")
        case .releasing:
            throw StatusError(.notFound, "session \(SessionID.shortPrefix(uid)) is being released")
        case .ready, .active, .failed:
            break
        }
        var targets: [Endpoint] = []
        for text in update.remoteListeners {
            let listener: GatewayListener
            do { listener = session.role == .cons ? try GatewayListener.parse(text) : GatewayListener(try Endpoint.parse(text), plaintext: false) }
            catch { throw StatusError(.invalidArgument, "bad remote listener in update: \(error)") }
            if session.role == .cons && listener.plaintext != plaintextDataPlane {
                throw StatusError(.invalidArgument, listener.plaintext
                    ? "the producer-side listener \(listener) belongs to an s2cs started with --data-plane-tls=False, but this s2cs encrypts the hop between gateways: start both gateways' s2cs the same way"
                    : "this s2cs forwards plain TCP (--data-plane-tls=False), but the producer-side listener \(listener) is encrypted (its s2cs runs with the default --data-plane-tls=True): start both gateways' s2cs the same way")
            }
            targets.append(listener.endpoint)
        }
        guard !targets.isEmpty else {
            throw StatusError(.invalidArgument, "update for session \(SessionID.shortPrefix(uid)) has no remote listeners")
        }
        let restart = session.state != .ready
        let spec = ProxySpec(uid: uid, role: session.role, listeners: session.listeners, targets: targets, rateKbps: session.rate)
        let dataPlane = self.dataPlane
        let task = Task {
            if restart { await dataPlane.stop(uid: uid) }
            try await dataPlane.start(spec)
        }
        session.targets = targets
        session.state = .starting
        session.startTask = task
        sessions[uid] = session
        return (task, session.listeners)
    }

    func finishUpdate(uid: String, error: (any Error)?) {
        guard var session = sessions[uid], session.state == .starting else { return }
        session.startTask = nil
        if let error {
            session.state = .failed("\(error)")
        } else {
            session.state = .active
            session.expiry?.cancel()
            session.expiry = nil
        }
        sessions[uid] = session
    }

    // MARK: release

    /// Marks the session as releasing and hands back what must finish before its ports are freed.
    func beginRelease(_ uid: String) throws(StatusError) -> Task<Void, any Error>? {
        guard var session = sessions[uid], session.state != .releasing else {
            throw StatusError(.notFound, "no session \(SessionID.shortPrefix(uid)) on this s2cs: check the uid and the --s2cs address (s2uc list shows the sessions)")
        }
        let task = session.startTask
        session.state = .releasing
        session.expiry?.cancel()
        session.expiry = nil
        if let waiter = session.helloWaiter {
            session.helloWaiter = nil
            waiter.resume(throwing: StatusError(.unavailable, "session \(SessionID.shortPrefix(uid)) was released before its hello arrived"))
        }
        sessions[uid] = session
        return task
    }

    func finishRelease(_ uid: String) {
        guard let session = sessions.removeValue(forKey: uid) else { return }
        allocator.release(session.ports)
        let held = sessionsByClient[session.client, default: 1] - 1
        sessionsByClient[session.client] = held > 0 ? held : nil
        logger.debug("session released", ["session": SessionID.shortPrefix(uid)])
    }

    /// The hello (or update) never came: release the session, and fail its pending request.
    private func expire(_ uid: String) async {
        guard var session = sessions[uid] else { return }
        switch session.state {
        case .pending, .ready:
            break
        default:
            return
        }
        let seconds = Double(helloTimeout.components.seconds) + Double(helloTimeout.components.attoseconds) / 1e18
        logger.warning("session expired before setup finished; released", ["session": SessionID.shortPrefix(uid), "timeout": "\(seconds)s"])
        if let waiter = session.helloWaiter {
            session.helloWaiter = nil
            waiter.resume(throwing: StatusError(.deadlineExceeded,
                "no hello for session \(SessionID.shortPrefix(uid)) within \(seconds) s; the session was released"))
        }
        session.state = .releasing
        sessions[uid] = session
        finishRelease(uid)
    }

    // MARK: listing and shutdown

    func snapshot() -> [Session] { sessions.values.sorted { $0.uid < $1.uid } }

    /// Fails every pending request and refuses new ones; returns the uids that had sessions.
    func shutdown() -> [String] {
        shuttingDown = true
        for (uid, var session) in sessions {
            session.expiry?.cancel()
            if let waiter = session.helloWaiter {
                session.helloWaiter = nil
                waiter.resume(throwing: StatusError(.unavailable, "s2cs is shutting down"))
            }
            sessions[uid] = session
        }
        for uid in Array(helloWatchers.keys) { wakeHelloWatchers(uid, found: false) }
        return Array(sessions.keys)
    }

    static func validUID(_ text: String) throws(StatusError) -> String {
        do { return try SessionID.validate(text) }
        catch { throw StatusError(.invalidArgument, "\(error)") }
    }
}
