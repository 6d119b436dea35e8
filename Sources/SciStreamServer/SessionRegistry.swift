import Foundation
import SciStreamWire
import SciStreamSystem
import SciStreamDataPlane
import SciStreamCommandLine
import SciStreamPolicy

/// The sessions of one s2cs, and the ports they hold: the one owner of a session's life.
///
/// An actor: every state change happens here, none of it blocks, and a pending request waits on a
/// continuation, not on a thread. A session's proxy is started, restarted and stopped only here
/// (`update`, `retire`), and its handle (`RunningProxy`) is kept only in its `Session`: the data
/// plane holds no session. Its ports return to the allocator only in `retire`, after its proxy is
/// stopped and reaped: release, expiry and shutdown all end a session through `retire`.
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
        let uid: SessionID
        let role: Role
        /// The address of the client that requested it (sessions and ports per client are capped).
        let client: String
        /// With authentication on, the identity (Globus `sub`) whose token created it: only it may
        /// send the session's hello, update and release, and see its details.
        let owner: String?
        /// The owner's username when its token named one (what an admin's `list` shows).
        var ownerName: String? = nil
        let numConn: Int
        let rate: Int
        let ports: [UInt16]
        let listeners: [Endpoint]
        var prodListeners: [String] = []
        var targets: [Endpoint] = []
        var state: State = .pending
        var helloWaiter: CheckedContinuation<[String], any Error>? = nil
        var expiry: Task<Void, Never>? = nil
        /// The start (or restart) of its proxy under way: its result becomes `proxy`.
        var startTask: Task<RunningProxy, any Error>? = nil
        /// Its proxy, once started (or taken over from an earlier s2cs): the only handle to it.
        var proxy: RunningProxy? = nil
        /// How its proxy ended, when it exited without being stopped (the session shows as failed).
        var proxyExit: String? = nil
        /// When the request arrived (the age in `list`).
        var created = ContinuousClock.now
        /// UDP as well as TCP (`s2uc --protocol udp`; SessionRegistry+UDP.swift).
        var udp = false
        /// A hello passed `claimHello` and its targets are being resolved: no other hello may take
        /// the session, and its expiry waits for that hello's outcome.
        var helloClaimed = false
    }

    /// Every change drops the listing made from it (SessionRegistry+Listing.swift). A `didSet` that
    /// does not read `oldValue` leaves the dictionary's in-place updates in place (no copy).
    var sessions: [SessionID: Session] = [:] { didSet { cachedListing = nil } }
    /// `listing()` as last made, until `sessions` changes.
    var cachedListing: SessionListing? = nil
    /// Counts the listings made (each one's `generation`).
    var listingsMade: UInt64 = 0
    var sessionsByClient: [String: Int] = [:]
    private let maxSessionsPerClient: Int
    /// Listener ports held, by client address and by identity (`--max-ports-per-client`).
    var portsByClient: [String: Int] = [:]
    var portsByOwner: [String: Int] = [:]
    private let portQuota: Int
    /// `--max-pending-ports`: what requests waiting for their hello may hold together.
    private let pendingPortCap: Int
    /// A pending session whose hello is this late (s2uc sends it right after the request) is released
    /// to make room when a new request would pass `pendingPortCap`.
    static let stalePending: Duration = .seconds(5)
    /// Authentication is on: sessions have owners.
    private let authenticated: Bool
    /// `--peer-gateways`: in plaintext mode, the only sources PROD listeners accept.
    private var peerSources: [SourceBlock]?
    /// Who may connect to CONS listeners (`--cons-allowed-sources`, or loopback and the requester).
    private var consumerSources: ConsumerSources
    var allocator: PortAllocator
    /// Where PROD and CONS listeners bind, and what clients are told for PROD listeners.
    private let bindIP: (prod: String, cons: String)
    /// The same as socket addresses, looked up once here: a port check binds one, with no name lookup
    /// inside the actor (nil: the address does not resolve, and no port on it is free).
    private let bindAddress: (prod: SocketAddress?, cons: SocketAddress?)
    nonisolated let advertisedProdIP: String
    /// This s2cs forwards plain TCP between gateways (`--data-plane-tls=False`): its listeners are
    /// reported as `tcp://host:port`.
    let plaintextDataPlane: Bool
    private let helloTimeout: Duration
    /// `--max-session-lifetime`: a session this old (since its request) is ended (nil: no limit).
    private let maxLifetime: Duration?
    private let earlyHelloWait: Duration
    private var helloWatchers: [SessionID: [UInt64: CheckedContinuation<Bool, Never>]] = [:]
    private var nextWatcherID: UInt64 = 0
    private var shuttingDown = false
    /// Proxies that exited without being stopped, since start (s2cs --metrics).
    private(set) var unexpectedExits = 0
    let dataPlane: DataPlane
    let logger: Logger

    /// Where expiries are recorded (`--audit-log`); nil: not recorded.
    private let audit: AuditLog?

    init(config: ServerConfiguration, dataPlane: DataPlane, logger: Logger, audit: AuditLog? = nil) {
        self.audit = audit
        self.allocator = PortAllocator(range: config.portRange)
        self.bindIP = (config.bindIP(for: .prod), config.bindIP(for: .cons))
        self.bindAddress = (try? SocketAddress.resolve(host: bindIP.prod, port: 0), try? SocketAddress.resolve(host: bindIP.cons, port: 0))
        self.advertisedProdIP = config.advertisedIP(for: .prod)
        self.maxSessionsPerClient = config.maxSessionsPerClient
        self.portQuota = config.portQuota
        self.pendingPortCap = config.pendingPortCap
        self.authenticated = config.authenticationEnabled
        self.peerSources = config.peerGateways.map { $0.map(\.sourceBlock) }
        self.consumerSources = ConsumerSources(configured: config.consAllowedSources, fenceable: dataPlane.sourceFenceRefusal == nil)
        self.plaintextDataPlane = !config.dataPlaneTLS
        self.helloTimeout = config.helloTimeout
        self.maxLifetime = config.maxSessionLifetime
        self.earlyHelloWait = min(config.helloTimeout, .seconds(10))
        self.dataPlane = dataPlane
        self.logger = logger
    }

    // MARK: request

    /// Registers the session `uid` (the request's uid, validated by the server), reserves its ports,
    /// then waits for its hello. Returns the reply.
    func request(_ request: Request, uid: SessionID, caller: Caller) async throws(StatusError) -> RequestReply {
        do {
            try admit(request, uid: uid, caller: caller)
        } catch {
            // A hello for this uid may be on its way: tell it at once why the request failed.
            if sessions[uid] == nil {
                rememberFailure(uid, error.status)
                wakeHelloWatchers(uid, found: false)
            }
            throw error
        }
        return try await awaitHello(uid)
    }

    /// Failed requests of the last moments, so that their hellos fail at once with the same reason.
    private var recentFailures: [SessionID: Status] = [:]
    private var recentFailureOrder: [SessionID] = []

    private func rememberFailure(_ uid: SessionID, _ status: Status) {
        if recentFailures[uid] == nil { recentFailureOrder.append(uid) }
        recentFailures[uid] = status
        if recentFailureOrder.count > 1024 {
            recentFailures[recentFailureOrder.removeFirst()] = nil
        }
    }

    private func admit(_ request: Request, uid: SessionID, caller: Caller) throws(StatusError) {
        guard !shuttingDown else { throw StatusError(.unavailable, "s2cs is shutting down") }
        // Caps and quotas count an IPv6 client by its /64 (IPAddress.clientKey).
        let client = IPAddress.clientKey(caller.address)
        try Self.checkNewUID(uid)
        if uid == .mock {
            logger.warning("session uses the documented mock uid: its tunnel key is public, anyone who can reach its listeners can join it", ["session": uid.prefix])
        }
        guard sessions[uid] == nil else {
            throw StatusError(.alreadyExists, "session \(uid.prefix) already exists on this s2cs: use a new uid, or release it first")
        }
        let held = sessionsByClient[client, default: 0]
        guard held < maxSessionsPerClient else {
            throw StatusError(.resourceExhausted, "client \(client) already holds \(held) sessions on this s2cs, the most allowed (--max-sessions-per-client \(maxSessionsPerClient)): release some first")
        }
        try Self.checkUDP(request, type: dataPlane.type, plaintext: plaintextDataPlane)
        let limit = SessionLimits.maxConnectionsPerSession
        guard request.numConn >= 1, request.numConn <= limit else {
            throw StatusError(.invalidArgument, "num_conn \(request.numConn) is out of range: use 1 to \(limit)")
        }
        if plaintextDataPlane && request.role == .prod && peerSources == nil {
            throw StatusError(.permissionDenied, "this s2cs forwards plain TCP between gateways (--data-plane-tls=False) without --peer-gateways: it takes no inbound sessions until its operator names the peer gateways")
        }
        let wanted = request.listenPorts.isEmpty ? Int(request.numConn) : request.listenPorts.count
        try checkListenPorts(request)
        let owner = authenticated ? caller.subject : nil
        let heldByClient = portsByClient[client, default: 0]
        let heldByOwner = owner.map { portsByOwner[$0, default: 0] } ?? 0
        // (More than the range can give is the range's error, below, not the quota's.)
        guard wanted > allocator.freeCount || (heldByClient + wanted <= portQuota && heldByOwner + wanted <= portQuota) else {
            let byIdentity = owner != nil && heldByOwner + wanted > portQuota
            let held = byIdentity ? heldByOwner : heldByClient
            throw StatusError(.resourceExhausted, "\(byIdentity ? "your identity" : "client \(client)") holds \(held) listener port\(held == 1 ? "" : "s") on this s2cs and asks for \(wanted) more, over the quota of \(portQuota) (--max-ports-per-client): release sessions first")
        }
        try makePendingRoom(for: wanted)
        let ports: [UInt16]
        let ip = request.role == .prod ? bindIP.prod : bindIP.cons
        let address = request.role == .prod ? bindAddress.prod : bindAddress.cons
        let isFree: (UInt16) -> Bool = { port in address.map { Socket.bindError($0.with(port: port)) == nil } ?? false }
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
        var session = Session(uid: uid, role: request.role, client: caller.address, owner: owner, numConn: ports.count, rate: Int(request.rate),
                              ports: ports, listeners: ports.map { Endpoint(host: ip, port: $0) })
        session.udp = request.udp
        if owner != nil { session.ownerName = caller.username }
        session.expiry = expiryTask(for: uid, created: session.created, setup: helloTimeout)
        sessions[uid] = session
        sessionsByClient[client, default: 0] += 1
        portsByClient[client, default: 0] += ports.count
        if let owner { portsByOwner[owner, default: 0] += ports.count }
        recentFailures[uid] = nil
        logger.debug("session requested", ["session": uid.prefix, "role": "\(request.role)", "ports": ports.map(String.init).joined(separator: ",")])
        wakeHelloWatchers(uid, found: true)
    }

    private func awaitHello(_ uid: SessionID) async throws(StatusError) -> RequestReply {
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
            throw StatusError(.unavailable, "session \(uid.prefix) was released before it was set up")
        }
        return RequestReply(status: .ok, listeners: reported(current.listeners, role: current.role), prodListeners: prodListeners)
    }

    /// How this s2cs reports a session's listeners: a producer-side s2cs that forwards plain TCP
    /// between gateways says so with `tcp://` (the consumer-side s2cs checks it); consumer-side
    /// listeners are where the consumer application connects, plain TCP in every mode.
    /// PROD listeners are told as `--advertise-ip` when given (the address peers reach through NAT).
    nonisolated func reported(_ listeners: [Endpoint], role: Role) -> [String] {
        listeners.map { listener in
            let told = role == .prod ? Endpoint(host: advertisedProdIP, port: listener.port) : listener
            return GatewayListener(told, plaintext: plaintextDataPlane && role == .prod).description
        }
    }

    // MARK: hello

    /// Records the hello: `checked` holds the session's targets as the handler parsed and (for PROD)
    /// checked them against the target policy, or why they were refused, which fails the request too.
    func hello(_ hello: Hello, uid: SessionID, caller: Caller, checked: Result<[String], StatusError>) async throws(StatusError) {
        var session: Session
        if let claimed = sessions[uid], claimed.helloClaimed, claimed.state == .pending {
            session = claimed  // checked by claimHello
        } else {
            session = try await helloSession(hello, uid: uid, caller: caller)
        }
        session.helloClaimed = false
        guard let waiter = session.helloWaiter else {
            throw StatusError(.alreadyExists, "session \(uid.prefix) already received its hello")
        }
        let targets: [String]
        switch checked {
        case .success(let list):
            targets = list
        case .failure(let refusal):
            // A refused target ends the session: its request fails with the same status, its ports return.
            session.helloWaiter = nil
            session.state = .releasing
            session.expiry?.cancel()
            sessions[uid] = session
            waiter.resume(throwing: refusal)
            freeSession(uid)  // nothing was started for it
            throw refusal
        }
        session.helloWaiter = nil
        session.prodListeners = targets
        session.state = .ready
        sessions[uid] = session
        waiter.resume(returning: targets)
    }

    /// Takes the session for this hello before its names are resolved (the handler resolves them
    /// only after this passed, then calls `hello`, or `releaseHelloClaim` if they are malformed):
    /// the session exists, belongs to the caller and waits for a hello, and the hello names no
    /// more targets than the session uses. A PROD session's listener i forwards to target
    /// i % count, so it needs no more targets than listeners; a CONS hello names the producer-side
    /// listeners, at most as many as a session may have.
    func claimHello(_ hello: Hello, uid: SessionID, caller: Caller) async throws(StatusError) {
        var session = try await helloSession(hello, uid: uid, caller: caller)
        let limit = session.role == .prod ? session.numConn : SessionLimits.maxConnectionsPerSession
        guard hello.prodListeners.count <= limit else {
            logger.info("hello refused: more targets than listeners", ["session": uid.prefix, "targets": "\(hello.prodListeners.count)", "max": "\(limit)"])
            throw StatusError(.invalidArgument, "the hello names \(hello.prodListeners.count) targets, more than session \(uid.prefix) has listeners (num_conn \(limit)): name at most \(limit)")
        }
        session.helloClaimed = true
        sessions[uid] = session
    }

    /// The claimed hello was malformed: the session waits for another one.
    func releaseHelloClaim(_ uid: SessionID) {
        sessions[uid]?.helloClaimed = false
    }

    /// The pending session a hello is for (waiting a little for a request it overtook), or why the
    /// hello is refused.
    private func helloSession(_ hello: Hello, uid: SessionID, caller: Caller) async throws(StatusError) -> Session {
        if sessions[uid] == nil {
            // The hello may overtake its request on another connection: wait a little for it.
            let found = recentFailures[uid] == nil ? await waitForSession(uid) : false
            if let failure = recentFailures[uid] {
                throw StatusError(failure.code, "the request for session \(uid.prefix) failed: \(failure.message)")
            }
            guard found else {
                throw StatusError(.notFound, "no pending request for session \(uid.prefix) on this s2cs: send the request first (s2uc does)")
            }
        }
        guard let session = sessions[uid] else {
            throw StatusError(.notFound, "session \(uid.prefix) was released")
        }
        try authorize(session, caller)
        guard session.role == hello.role else {
            throw StatusError(.invalidArgument, "hello role \(hello.role) does not match session \(uid.prefix) role \(session.role)")
        }
        guard session.state == .pending, session.helloWaiter != nil, !session.helloClaimed else {
            throw StatusError(.alreadyExists, "session \(uid.prefix) already received its hello")
        }
        return session
    }

    /// The session `uid`, waiting a little (as a hello does) for a request still on its way: the
    /// original's client sends its req and hello at once, on streams that are handled concurrently.
    func sessionAwaitingItsRequest(_ uid: SessionID) async -> Session? {
        if sessions[uid] == nil, recentFailures[uid] == nil { _ = await waitForSession(uid) }
        return sessions[uid]
    }

    /// For an admin, who sees only uid prefixes in `list`: the one session whose uid starts with
    /// `prefix` (at least the 8 characters `list` shows), which is not a whole uid (a release names
    /// a session by its uid as `SessionName.uid`).
    func sessionID(adminPrefix prefix: String) throws(StatusError) -> SessionID {
        guard SessionID.looksLikePrefix(prefix) else {
            throw StatusError(.invalidArgument, "'\(SessionID.shortPrefix(prefix))' is neither a uid nor a uid prefix of at least 8 characters as s2uc list shows it")
        }
        let matches = sessions.keys.filter { $0.text.hasPrefix(prefix.lowercased()) }
        guard let uid = matches.first else { throw StatusError(.notFound, "no session whose uid starts with \(SessionID.shortPrefix(prefix)) on this s2cs") }
        guard matches.count == 1 else { throw StatusError(.invalidArgument, "\(matches.count) sessions' uids start with \(SessionID.shortPrefix(prefix)): give more of the uid") }
        return uid
    }

    /// Whether a hello that came before its request waits for `uid`'s request now.
    func isHelloWaiting(for uid: SessionID) -> Bool { helloWatchers[uid]?.isEmpty == false }

    private func waitForSession(_ uid: SessionID) async -> Bool {
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

    private func dropHelloWatcher(_ uid: SessionID, _ id: UInt64) {
        if let continuation = helloWatchers[uid]?.removeValue(forKey: id) {
            continuation.resume(returning: false)
        }
        if helloWatchers[uid]?.isEmpty == true { helloWatchers[uid] = nil }
    }

    private func wakeHelloWatchers(_ uid: SessionID, found: Bool) {
        guard let watchers = helloWatchers.removeValue(forKey: uid) else { return }
        for continuation in watchers.values { continuation.resume(returning: found) }
    }

    // MARK: update

    /// Points the session's listeners at `targets` (the update's remote listeners as the handler
    /// parsed and checked them), starts (or restarts) its proxy and waits until it listens. Returns
    /// the session's listeners. A failure to start is logged here in full; the status thrown says
    /// what failed without local detail (paths, the proxy's log text).
    func update(_ update: Update, uid: SessionID, targets: [Endpoint], caller: Caller) async throws(StatusError) -> [Endpoint] {
        let (task, listeners) = try beginUpdate(update, uid: uid, targets: targets, caller: caller)
        let prefix = uid.prefix
        let proxy: RunningProxy?
        let failure: (any Error)?
        do { proxy = try await task.value; failure = nil } catch { proxy = nil; failure = error }
        guard var session = sessions[uid], session.state == .starting else {
            // Released (or s2cs shut down) while its proxy was starting: `retire` stops what started.
            throw StatusError(.unavailable, shuttingDown ? "s2cs is shutting down" : "session \(prefix) was released while its proxy was starting")
        }
        session.startTask = nil
        if let failure {
            // What `list` shows remote callers: the kind of failure, never paths or the proxy's log text.
            let remote = ControlServer.remoteStatus(failure, session: prefix)
            session.state = .failed(remote.message)
            // A failed session holds its ports only as long as a pending one would: then it is released.
            session.expiry = expiryTask(for: uid, created: session.created, setup: helloTimeout)
            sessions[uid] = session
            logger.error("update failed", ["session": prefix, "error": ErrorWording.text(failure)])
            throw StatusError(remote)
        }
        session.state = .active
        session.proxy = proxy
        session.expiry?.cancel()
        session.expiry = expiryTask(for: uid, created: session.created, setup: nil)
        sessions[uid] = session
        if let proxy {
            watchExit(of: proxy)
            // Its record, so that a restarted s2cs takes it over (written while it runs: an s2cs
            // killed with SIGKILL leaves it too).
            if let record = record(of: session) { await dataPlane.persist(record, proxy: proxy) }
        }
        return listeners
    }

    private func beginUpdate(_ update: Update, uid: SessionID, targets: [Endpoint], caller: Caller) throws(StatusError) -> (Task<RunningProxy, any Error>, [Endpoint]) {
        guard !shuttingDown else { throw StatusError(.unavailable, "s2cs is shutting down") }
        guard var session = sessions[uid] else {
            throw StatusError(.notFound, "no session \(uid.prefix) on this s2cs: check the uid and the --s2cs address")
        }
        try authorize(session, caller)
        guard session.role == update.role else {
            throw StatusError(.invalidArgument, "update role \(update.role) does not match session \(uid.prefix) role \(session.role)")
        }
        switch session.state {
        case .pending:
            throw StatusError(.invalidArgument, "session \(uid.prefix) has not received its hello yet")
        case .starting:
            throw StatusError(.unavailable, "session \(uid.prefix) is already being updated: retry when that finishes")
        case .releasing:
            throw StatusError(.notFound, "session \(uid.prefix) is being released")
        case .active where !authenticated:
            // Without authentication a session has no owner: whoever learns the uid must not be
            // able to point a live tunnel somewhere else.
            throw StatusError(.permissionDenied, "session \(uid.prefix) is active and this s2cs runs without authentication: its targets cannot be changed; release it and request a new session")
        case .ready, .active, .failed:
            break
        }
        guard !targets.isEmpty else {
            throw StatusError(.invalidArgument, "update for session \(uid.prefix) has no remote listeners")
        }
        session.expiry?.cancel()
        session.expiry = nil
        // Every listener is fenced: CONS ones to the consumer applications, PROD ones (plaintext mode)
        // to the peer gateways; a TLS PROD listener admits whoever holds the session key.
        let sources = session.role == .cons ? consumerSources.blocks(requester: session.client)
            : plaintextDataPlane ? (peerSources ?? []) : []
        var spec = ProxySpec(uid: uid, role: session.role, listeners: session.listeners, targets: targets, rateKbps: session.rate, allowedSources: sources)
        spec.udp = session.udp
        let dataPlane = self.dataPlane
        // A restart stops the proxy it replaces first (its listeners are the new one's).
        let replaced = session.proxy
        session.proxy = nil
        session.proxyExit = nil
        let task = Task {
            if let replaced { await dataPlane.stop(replaced) }
            return try await dataPlane.start(spec)
        }
        session.targets = targets
        session.state = .starting
        session.startTask = task
        sessions[uid] = session
        return (task, session.listeners)
    }

    // MARK: release

    /// Releases a session for `caller`: gives up a start in progress, stops its proxy, frees its
    /// ports. Returns a note when its proxy had died on its own.
    func release(_ uid: SessionID, caller: Caller) async throws(StatusError) -> String? {
        try beginRelease(uid, caller: caller)
        var note: String? = nil
        if case .exited(let description) = sessions[uid]?.proxy?.status {
            note = "its proxy had exited unexpectedly (\(description))"
        }
        await retire(uid)
        return note
    }

    /// Marks the session as releasing (nothing else starts or stops its proxy from now on).
    private func beginRelease(_ uid: SessionID, caller: Caller) throws(StatusError) {
        guard var session = sessions[uid], session.state != .releasing else {
            throw StatusError(.notFound, "no session \(uid.prefix) on this s2cs: check the uid and the --s2cs address (s2uc list shows the sessions)")
        }
        try authorize(session, caller)
        session.state = .releasing
        session.expiry?.cancel()
        session.expiry = nil
        if let waiter = session.helloWaiter {
            session.helloWaiter = nil
            waiter.resume(throwing: StatusError(.unavailable, "session \(uid.prefix) was released before its hello arrived"))
        }
        sessions[uid] = session
    }

    /// The end of every session: a start under way given up (its task cancelled: it stops what it
    /// started), its proxy stopped and reaped, then its ports freed. The session must be `.releasing`
    /// (so nothing else starts or stops it meanwhile).
    private func retire(_ uid: SessionID) async {
        guard let session = sessions[uid], session.state == .releasing else { return }
        session.startTask?.cancel()
        // A start that finished all the same hands back a proxy that nobody else will stop.
        let started = try? await session.startTask?.value
        if let proxy = session.proxy { await dataPlane.stop(proxy) }
        if let started, started !== session.proxy { await dataPlane.stop(started) }
        freeSession(uid)
    }

    /// Learns of the exit of `proxy` (the session `proxy.session`'s), whenever it comes; one that was
    /// not stopped (`RunningProxy.wasStopped`) is an unexpected exit: counted, logged, and shown by
    /// the session (failed) while it is not released.
    private func watchExit(of proxy: RunningProxy) {
        Task { [weak self] in
            guard let status = await proxy.exit(), !proxy.wasStopped else { return }
            await self?.proxyExited(proxy, status: status)
        }
    }

    private func proxyExited(_ proxy: RunningProxy, status: TerminationStatus) {
        let uid = proxy.session
        unexpectedExits += 1
        logger.error("proxy exited unexpectedly", [
            "session": uid.prefix, "type": dataPlane.type.name, "pid": proxy.pid.map(String.init) ?? "?", "status": status.description,
        ])
        if sessions[uid]?.proxy === proxy { sessions[uid]?.proxyExit = status.description }
    }

    /// Keeps the ports held by requests still waiting for their hello within `--max-pending-ports`:
    /// the oldest whose hello is `stalePending` late are released to make room (their requests fail);
    /// if that is not enough, this request is refused. A request alone may take more than the cap
    /// (the range and the per-client quota bound it).
    private func makePendingRoom(for wanted: Int) throws(StatusError) {
        let pending = sessions.values.filter { $0.state == .pending }.sorted { $0.created < $1.created }
        var held = pending.reduce(0) { $0 + $1.ports.count }
        let now = ContinuousClock.now
        for session in pending where held > 0 && held + wanted > pendingPortCap && now - session.created >= Self.stalePending {
            held -= session.ports.count
            dropPending(session.uid)
        }
        guard held == 0 || held + wanted <= pendingPortCap else {
            throw StatusError(.resourceExhausted, "requests still waiting for their hello hold \(held) listener port\(held == 1 ? "" : "s") on this s2cs, and \(wanted) more would pass --max-pending-ports \(pendingPortCap): retry in a moment")
        }
    }

    /// Releases a pending session (it has started nothing) and fails its request.
    private func dropPending(_ uid: SessionID) {
        guard var session = sessions[uid], session.state == .pending else { return }
        logger.warning("pending session released to make room (--max-pending-ports)", ["session": uid.prefix, "client": session.client])
        let waiter = session.helloWaiter
        session.helloWaiter = nil
        session.state = .releasing
        session.expiry?.cancel()
        sessions[uid] = session
        freeSession(uid)
        waiter?.resume(throwing: StatusError(.resourceExhausted,
            "session \(uid.prefix) was released: its hello did not come while other requests waited for ports (--max-pending-ports)"))
    }

    private func freeSession(_ uid: SessionID) {
        guard let session = sessions.removeValue(forKey: uid) else { return }
        allocator.release(session.ports)
        let client = IPAddress.clientKey(session.client)
        let held = sessionsByClient[client, default: 1] - 1
        sessionsByClient[client] = held > 0 ? held : nil
        let ports = portsByClient[client, default: 0] - session.ports.count
        portsByClient[client] = ports > 0 ? ports : nil
        if let owner = session.owner {
            let owned = portsByOwner[owner, default: 0] - session.ports.count
            portsByOwner[owner] = owned > 0 ? owned : nil
        }
        logger.debug("session released", ["session": uid.prefix])
    }

    /// After `setup` (--hello-timeout while the session is being set up; nil once it is active) or
    /// when the session created at `created` reaches --max-session-lifetime, whichever comes first,
    /// unless cancelled first (the session moved on): `expire(uid)`. Nil when neither applies.
    private func expiryTask(for uid: SessionID, created: ContinuousClock.Instant, setup: Duration?) -> Task<Void, Never>? {
        let lifetimeLeft = maxLifetime.map { max(.zero, created + $0 - ContinuousClock.now) }
        guard let timeout = [setup, lifetimeLeft].compactMap({ $0 }).min() else { return nil }
        return Task { [weak self] in
            try? await Task.sleep(for: timeout)
            if Task.isCancelled { return }
            await self?.expire(uid)
        }
    }

    /// A session's expiry: one past --max-session-lifetime is ended (`endAtLifetime`); one still
    /// pending or ready (the hello or the update never came) is released and its pending request
    /// failed; a failed one nobody released is released.
    private func expire(_ uid: SessionID) async {
        guard var session = sessions[uid] else { return }
        if let maxLifetime, ContinuousClock.now - session.created >= maxLifetime, session.state != .starting, session.state != .releasing {
            await endAtLifetime(uid, maxLifetime)
            return
        }
        switch session.state {
        case .pending where session.helloClaimed:
            // Its hello's targets are being resolved: expire only if that hello fails.
            session.expiry = expiryTask(for: uid, created: session.created, setup: .milliseconds(100))
            sessions[uid] = session
            return
        case .pending, .ready:
            break
        case .failed:
            logger.warning("failed session not released in time; released", ["session": uid.prefix])
            audit?.record(AuditEntry(event: "expired", client: session.client, identity: session.owner, session: uid.prefix,
                                     role: "\(session.role)".uppercased(), reason: "failed, not released within --hello-timeout"))
            session.state = .releasing
            session.expiry = nil
            sessions[uid] = session
            await retire(uid)
            return
        case .active:
            // Woken before its lifetime (a clock's rounding): wait again.
            session.expiry = expiryTask(for: uid, created: session.created, setup: nil)
            sessions[uid] = session
            return
        default:
            return
        }
        let seconds = helloTimeout.inSeconds
        logger.warning("session expired before setup finished; released", ["session": uid.prefix, "timeout": "\(seconds)s"])
        audit?.record(AuditEntry(event: "expired", client: session.client, identity: session.owner, session: uid.prefix,
                                 role: "\(session.role)".uppercased(), reason: "setup not finished within --hello-timeout (\(seconds)s)"))
        let waiter = session.helloWaiter
        session.helloWaiter = nil
        session.state = .releasing
        sessions[uid] = session
        await retire(uid)
        // Told once it is true: the session is gone and its ports are free.
        waiter?.resume(throwing: StatusError(.deadlineExceeded,
            "no hello for session \(uid.prefix) within \(seconds) s; the session was released"))
    }

    /// Ends a session that reached --max-session-lifetime, as a release would: its proxy stopped and
    /// reaped, its ports freed, its files and record removed; a request still waiting is failed.
    private func endAtLifetime(_ uid: SessionID, _ lifetime: Duration) async {
        guard var session = sessions[uid] else { return }
        let age = (ContinuousClock.now - session.created).inSeconds
        let limit = lifetime.inSeconds
        logger.info("session reached --max-session-lifetime; released", ["session": uid.prefix, "age": String(format: "%.0fs", age), "limit": "\(limit)s"])
        audit?.record(AuditEntry(event: "expired", client: session.client, identity: session.owner, session: uid.prefix,
                                 role: "\(session.role)".uppercased(), reason: "max session lifetime (--max-session-lifetime \(limit)s)"))
        let waiter = session.helloWaiter
        session.helloWaiter = nil
        session.helloClaimed = false
        session.state = .releasing
        session.expiry = nil
        sessions[uid] = session
        await retire(uid)
        waiter?.resume(throwing: StatusError(.deadlineExceeded,
            "session \(uid.prefix) reached this s2cs's --max-session-lifetime (\(limit) s) and was released"))
    }


    // MARK: owners

    /// With authentication on, only the identity that created a session may act on it.
    private func authorize(_ session: Session, _ caller: Caller) throws(StatusError) {
        guard let owner = session.owner, owner != caller.subject else { return }
        if caller.admin {
            logger.info("admin acts on another identity's session", ["session": session.uid.prefix, "admin": caller.username ?? "?"])
            return
        }
        logger.warning("request refused: session belongs to another identity", ["session": session.uid.prefix, "user": caller.username ?? "?"])
        throw StatusError(.permissionDenied, "session \(session.uid.prefix) belongs to another identity")
    }

    /// Whether `caller` may see the details (targets, notes) in `list` of a session with that owner
    /// (authentication on) and requesting client address: with authentication on, its owner;
    /// without, a caller from the address that requested it; an operator, any.
    static func mayInspect(owner: String?, client: String, _ caller: Caller) -> Bool {
        if caller.admin { return true }
        if let owner { return owner == caller.subject }
        return client == caller.address
    }

    // MARK: ports

    /// Client-chosen listen ports: only for CONS (the consumer application's ports), only inside
    /// `--port-range`, at most the per-session listener cap, and no more than `num_conn`.
    private func checkListenPorts(_ request: Request) throws(StatusError) {
        let ports = request.listenPorts
        guard !ports.isEmpty else { return }
        guard request.role == .cons else {
            throw StatusError(.invalidArgument, "listen ports can be chosen only for outbound (CONS) sessions: an inbound session's ports come from this s2cs's --port-range")
        }
        let limit = SessionLimits.maxConnectionsPerSession
        guard ports.count <= limit else {
            throw StatusError(.invalidArgument, "\(ports.count) listen ports asked for: at most \(limit) per session")
        }
        guard ports.count <= Int(request.numConn) else {
            throw StatusError(.invalidArgument, "\(ports.count) listen ports asked for but num_conn is \(request.numConn): give at most num_conn ports")
        }
        if let outside = ports.first(where: { !(allocator.range.lower...allocator.range.upper).contains($0) }) {
            throw StatusError(.invalidArgument, "port \(outside) is outside this s2cs's --port-range \(allocator.range): choose --receiver_ports inside it, or leave them out")
        }
    }

    // MARK: listing and shutdown

    /// Every session, by uid (tests look into the sessions with it; `list` and `/metrics` take the
    /// kept `listing()`).
    func snapshot() -> [Session] {
        sessions.keys.sorted { $0.text < $1.text }.compactMap { sessions[$0] }
    }

    /// Refuses new work, fails every pending request, then ends every session (proxies stopped and
    /// reaped, ports freed), starts in progress included. Returns how many sessions there were.
    /// `--peer-gateways` and `--cons-allowed-sources` after a reload: sessions started from now on
    /// accept only these sources (running proxies keep theirs).
    func setSources(peerGateways: [AddressRule]?, consumers: [AddressRule]?) {
        peerSources = peerGateways.map { $0.map(\.sourceBlock) }
        consumerSources = ConsumerSources(configured: consumers, fenceable: dataPlane.sourceFenceRefusal == nil)
    }

    /// The port pool: ports in `--port-range`, and those held by sessions now.
    func portPool() -> (size: Int, held: Int) { (allocator.range.count, allocator.range.count - allocator.freeCount) }

    /// Sessions held now (any state).
    func sessionCount() -> Int { sessions.count }

    func shutdown() async -> Int {
        shuttingDown = true
        var ending: [SessionID] = []
        for (uid, var session) in sessions {
            session.expiry?.cancel()
            session.expiry = nil
            if let waiter = session.helloWaiter {
                session.helloWaiter = nil
                waiter.resume(throwing: StatusError(.unavailable, "s2cs is shutting down"))
            }
            if session.state != .releasing {
                // A release already under way finishes by itself.
                session.state = .releasing
                ending.append(uid)
            }
            sessions[uid] = session
        }
        for uid in Array(helloWatchers.keys) { wakeHelloWatchers(uid, found: false) }
        await withTaskGroup(of: Void.self) { group in
            for uid in ending { group.addTask { await self.retire(uid) } }
        }
        return ending.count
    }

    /// The session id of a uid as it came off the wire, or INVALID_ARGUMENT saying what a uid looks like.
    static func sessionID(_ text: String) throws(StatusError) -> SessionID {
        do { return try SessionID(validating: text) }
        catch { throw StatusError(.invalidArgument, "\(error)") }
    }

    /// The uid of a new session: it is the session's only secret, so it must be a random (version 4)
    /// UUID; the documented mock uid is accepted (with a warning in the log).
    static func checkNewUID(_ uid: SessionID) throws(StatusError) {
        guard uid == .mock || uid.isRandom else {
            throw StatusError(.invalidArgument, "uid \(uid.prefix)... is not a random (version 4) UUID: the uid is the session's secret, so this s2cs accepts only random ones (s2uc makes them)")
        }
    }
}

// MARK: - restart: records and adoption

extension SessionRegistry {
    /// The record a restarted s2cs takes `session` over from (UDP sessions are not kept: their
    /// relay runs inside s2cs).
    func record(of session: Session) -> SessionRecord? {
        guard !session.udp else { return nil }
        let created = Date().timeIntervalSince1970 - (ContinuousClock.now - session.created).inSeconds
        return SessionRecord(uid: session.uid, role: session.role, client: session.client, owner: session.owner,
                             numConn: session.numConn, rate: session.rate, ports: session.ports,
                             listeners: session.listeners.map(\.description), prodListeners: session.prodListeners,
                             targets: session.targets.map(\.description), udp: session.udp, created: created)
    }

    /// Takes over the sessions the data plane adopted at start (their proxies still run): each is
    /// active again, with its owner, its ports held and counted against its client's quotas, and its
    /// proxy's handle, as before the restart. A record that no longer fits (a port outside
    /// --port-range, an address that does not parse) is not restored; its proxy is stopped.
    func restore(_ adopted: [AdoptedSession]) async -> [SessionRecord] {
        var restored: [SessionRecord] = []
        for (record, proxy) in adopted.map({ ($0.record, $0.proxy) }) {
            let uid = record.uid
            let role = record.role
            guard sessions[uid] == nil,
                  let listeners = try? record.listeners.map({ try Endpoint.parse($0) }),
                  let targets = try? record.targets.map({ try Endpoint.parse($0) }),
                  !record.ports.isEmpty, allocator.reserve(record.ports, isFree: { _ in true }) == nil else {
                logger.warning("session record does not fit this s2cs: its proxy is stopped", ["session": uid.prefix])
                await dataPlane.stop(proxy)
                continue
            }
            let age = max(0, Date().timeIntervalSince1970 - record.created)
            var session = Session(uid: uid, role: role, client: record.client, owner: record.owner, numConn: record.numConn,
                                  rate: record.rate, ports: record.ports, listeners: listeners)
            session.prodListeners = record.prodListeners
            session.targets = targets
            session.state = .active
            session.proxy = proxy
            watchExit(of: proxy)
            // The age it had (the record's `created`): --max-session-lifetime counts from its request.
            session.created = ContinuousClock.now - .milliseconds(Int64(min(age, 1e9) * 1000))
            session.expiry = expiryTask(for: uid, created: session.created, setup: nil)
            sessions[uid] = session
            // Counted as `admit` counts them (an IPv6 client by its /64), so that release evens them out.
            let client = IPAddress.clientKey(record.client)
            sessionsByClient[client, default: 0] += 1
            portsByClient[client, default: 0] += record.ports.count
            if let owner = record.owner { portsByOwner[owner, default: 0] += record.ports.count }
            restored.append(record)
        }
        return restored
    }

    /// s2cs exits keeping its sessions for the next s2cs (`--keep-sessions-on-exit`): pending
    /// requests fail, sessions that are not active (pending, starting, failed) end as at shutdown,
    /// and active ones whose record is written are let go with their proxies running. Returns how
    /// many were kept and how many ended.
    func shutdownKeepingActive() async -> (kept: Int, ended: Int) {
        var keep: [SessionID] = []
        for (uid, session) in sessions where session.state == .active && !session.udp {
            guard let proxy = session.proxy, case .running = proxy.status, let record = record(of: session) else { continue }
            if await dataPlane.persist(record, proxy: proxy) { keep.append(uid) }
        }
        for uid in keep {
            sessions[uid]?.expiry?.cancel()
            sessions[uid] = nil
        }
        let ended = await shutdown()
        return (keep.count, ended)
    }
}

