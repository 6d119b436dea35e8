import Foundation
import Synchronization
import SciStreamWire
import SciStreamMetrics
import SciStreamSystem
import CSciStream
import SciStreamTLS
import SciStreamDataPlane
import SciStreamAuth
import SciStreamCommandLine
import SciStreamPolicy

/// The s2cs control server: accepts connections (TLS by default), reads frames, answers each RPC.
/// One bad peer never takes the server down: each connection is its own task that catches its own errors.
public final class ControlServer: Sendable {
    public let config: ServerConfiguration
    let logger: Logger
    let registry: SessionRegistry
    let dataPlane: DataPlane
    /// Checks every request's token (Globus Auth introspection); nil when authentication is off.
    let tokenChecker: TokenChecker?
    /// What a reload (SIGHUP) may change: the target policy (`--allowed-targets`, or the default) and
    /// `--allowed-identities`, read again from their `@FILE`s.
    private struct ReloadablePolicy {
        var targetPolicy: TargetPolicy
        var allowedIdentities: [String]?
        var adminIdentities: [String]?
    }
    private let policy: Mutex<ReloadablePolicy>
    /// Where sessions may forward (`--allowed-targets`, or the default policy), with this s2cs's own
    /// ports as bound (`servesMetrics(on:)` adds the metrics port once it is).
    var targetPolicy: TargetPolicy { policy.withLock { $0.targetPolicy } }
    /// `--allowed-identities` (nil: any).
    var allowedIdentities: [String]? { policy.withLock { $0.allowedIdentities } }
    /// `--admin-identities` (nil: none).
    var adminIdentities: [String]? { policy.withLock { $0.adminIdentities } }
    /// `--audit-log`: one JSON line per decision (AuditLog.swift); nil with `--audit-log none`.
    let audit: AuditLog?
    /// What `--metrics` serves (Metrics.swift).
    let metrics = Metrics()
    /// Reads sessions' traffic from their proxies for `list` and `--metrics` (ControlServer+Traffic.swift).
    let traffic = TrafficMeter()
    /// What `list` and `/metrics` keep between requests (ControlServer+Traffic.swift, SessionSeries.swift).
    let views = ListingViews()
    /// The control channel's TLS context; a reload swaps it (connections keep the one they began with).
    private let tlsContext: Mutex<TLSContext?>
    private let listener: Socket
    /// The local admin channel (`--admin-socket`): a Unix socket, mode 0600, whose callers are
    /// operators (`Caller.localAdmin`); nil with `--admin-socket none`.
    private let adminListener: (socket: Socket, path: String)?
    /// Control connections open now (`--max-connections`, `--max-connections-per-client`), and who
    /// makes room for whom when they are all taken.
    let connectionTable: ConnectionTable
    private let refusals = Mutex(0)
    static let maxRefusalsInFlight = 64
    /// Set by `shutdown`: the accept loop ends instead of retrying.
    private let stopping = Mutex(false)
    /// Draining (SIGUSR1, until SIGUSR2): new sessions are refused, existing ones go on.
    private let drainingState = Mutex(false)
    /// Set while the accept loop runs (for `/readyz`).
    private let accepting = Mutex(false)

    /// Serves on `listener` (from `listen(_:)`), or binds `--bind`:`--port` itself.
    public init(config: ServerConfiguration, dataPlane: DataPlane, tls: TLSContext?, logger: Logger, listener: Socket? = nil) throws {
        self.config = config
        self.logger = logger
        self.dataPlane = dataPlane
        self.tlsContext = Mutex(tls)
        let auditPath = config.auditLog == "none" ? nil : config.auditLog ?? dataPlane.folder + "/audit.log"
        self.audit = try auditPath.map { path throws(StartupError) in try AuditLog(path: path, logger: logger) }
        self.registry = SessionRegistry(config: config, dataPlane: dataPlane, logger: logger, audit: audit)
        self.connectionTable = ConnectionTable(maxConnections: config.maxConnections, maxPerClient: config.maxConnectionsPerClient)
        self.tokenChecker = try config.makeTokenChecker(logger: logger)
        let listener = try listener ?? Self.listen(config)
        self.listener = listener
        let adminPath = config.adminSocket == "none" ? nil : config.adminSocket ?? dataPlane.folder + "/admin.sock"
        do {
            self.adminListener = try adminPath.map { path throws(Errno) in (try Socket.listenUnix(path: path, mode: 0o600), path) }
        } catch {
            // The one the operator named must open; the default one is a convenience (a folder path
            // too long for a Unix socket, say): s2cs serves without it and says so.
            guard config.adminSocket == nil else {
                throw ServerError.cannotListen(address: adminPath ?? "", reason: "\(error) (--admin-socket; 'none' opens no admin channel)")
            }
            logger.warning("no local admin socket: cannot open it in the session folder; name one with --admin-socket", ["path": adminPath ?? "", "error": "\(error)"])
            self.adminListener = nil
        }
        var policy = config.targetPolicy
        if let bound = listener.localAddress?.port { policy.servicePorts.insert(bound) }
        self.policy = Mutex(ReloadablePolicy(targetPolicy: policy, allowedIdentities: config.allowedIdentities, adminIdentities: config.adminIdentities))
        tls?.selectHTTP2WhenOffered()
    }

    /// Binds the control port (`--bind`, `--port`; with `--port 0` the kernel picks one): s2cs
    /// binds it first, since its default session folder is named after it.
    public static func listen(_ config: ServerConfiguration) throws -> Socket {
        let address = try SocketAddress.resolve(host: config.bindAddress, port: config.port)
        do {
            return try Socket.listen(on: address, backlog: 4096)
        } catch {
            throw ServerError.cannotListen(address: "\(config.bindAddress):\(config.port)", reason: "\(error)")
        }
    }

    /// The metrics page is served on `address`: its port is never a session's target on this host.
    func servesMetrics(on address: SocketAddress) {
        policy.withLock { _ = $0.targetPolicy.servicePorts.insert(address.port) }
    }

    /// The address the control port is bound to (with the real port when `--port 0`).
    public var boundAddress: SocketAddress? { listener.localAddress }

    /// Accepts connections until the task is cancelled.
    public func run() async {
        var lastAcceptError: ContinuousClock.Instant? = nil
        accepting.withLock { $0 = true }
        defer { accepting.withLock { $0 = false } }
        let refreshing = Task { await self.refreshTrafficInBackground() }
        defer { refreshing.cancel() }
        await withDiscardingTaskGroup { group in
            if let admin = adminListener?.socket {
                group.addTask { await self.runAdmin(admin) }
            }
            while !Task.isCancelled {
                let socket: Socket
                do {
                    socket = try await listener.accept()
                } catch {
                    if Task.isCancelled || stopping.withLock({ $0 }) { break }
                    // Out of descriptors (EMFILE) or memory: say so at most once a second, back off, retry.
                    if lastAcceptError.map({ ContinuousClock.now - $0 > .seconds(1) }) ?? true {
                        logger.error("accept failed; retrying", ["error": ErrorWording.text(error), "connections": "\(connectionTable.count)"])
                        lastAcceptError = .now
                    }
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                }
                let client = socket.peerAddress?.host ?? "unknown"
                let perClient: Bool
                switch connectionTable.admit(socket, client: client) {
                case .admitted(let admitted, let dropped):
                    if let dropped {
                        logger.info("connection dropped to make room: it had sent no request yet", ["client": dropped, "for": client, "max": "\(config.maxConnections)"])
                    }
                    group.addTask {
                        await self.serve(socket, id: admitted)
                        // After a burst, hand the memory of its connections back to the system.
                        if self.connectionTable.remove(admitted) == 0 { _ = scistream_malloc_trim() }
                    }
                    continue
                case .refusedForClient: perClient = true
                case .refusedFull: perClient = false
                }
                // Over the cap: answer RESOURCE_EXHAUSTED (a few such answers at a time), then close.
                let answering = refusals.withLock { count -> Bool in
                    guard count < Self.maxRefusalsInFlight else { return false }
                    count += 1
                    return true
                }
                let status = perClient
                    ? Status(.resourceExhausted, "this s2cs is serving the most control connections it allows from one address (--max-connections-per-client \(config.maxConnectionsPerClient)): close some, or retry later")
                    : Status(.resourceExhausted, "this s2cs is serving its most control connections (--max-connections \(config.maxConnections)): retry later")
                logger.warning(perClient ? "connection refused: too many control connections from one address" : "connection refused: too many control connections",
                               ["client": client, "max": "\(perClient ? config.maxConnectionsPerClient : config.maxConnections)"])
                guard answering else {
                    socket.close()
                    continue
                }
                group.addTask {
                    await self.serve(socket, refusing: status)
                    self.refusals.withLock { $0 -= 1 }
                }
            }
        }
    }

    /// Accepts local admin connections (a few at a time: only the operator reaches this socket).
    private func runAdmin(_ admin: Socket) async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                guard let socket = try? await admin.accept() else {
                    if Task.isCancelled || stopping.withLock({ $0 }) { break }
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                }
                group.addTask { await self.serve(socket, localAdmin: true) }
            }
        }
    }

    /// The one way s2cs stops (SIGINT, SIGTERM, SIGHUP, SIGQUIT): stop accepting, refuse new work
    /// (an update that arrives now starts nothing), end every session (proxies stopped and reaped,
    /// files removed, ports freed). The caller then exits.
    /// With `keepingSessions` (`--keep-sessions-on-exit`, not SIGQUIT), active sessions are let go
    /// instead: their proxies go on and their records stay for the next s2cs to take over.
    public func shutdown(keepingSessions: Bool = false) async {
        stopping.withLock { $0 = true }
        // Wakes the accept loop (accept fails on a listening socket shut down), which then ends.
        listener.shutdown()
        if let (admin, path) = adminListener {
            admin.shutdown()
            _ = unlink(path)
        }
        logger.info("shutting down")
        if keepingSessions {
            let (kept, ended) = await registry.shutdownKeepingActive()
            logger.info("sessions kept for the next s2cs; the others ended", ["kept": "\(kept)", "ended": "\(ended)"])
            return
        }
        // The registry's sessions hold every proxy this s2cs started or took over.
        let count = await registry.shutdown()
        logger.info("sessions ended", ["sessions": "\(count)"])
    }

    /// At start: the sessions the data plane took over from an earlier s2cs become this registry's.
    public func restore(_ adopted: [AdoptedSession]) async {
        for record in await registry.restore(adopted) {
            audit?.record(AuditEntry(event: "adopted", client: record.client, identity: record.owner, session: record.uid.prefix,
                                     role: "\(record.role)", targets: record.targets, ports: record.ports, status: "OK"))
        }
    }

    /// A reload (SIGHUP): `new` is the command line parsed again, which read its files again (the
    /// control certificate and key, `--client-secret-file`, `@FILE` lists). Each part that loads is
    /// taken; one that does not keeps the old value and says why. Sessions are not touched.
    /// Returns what was reloaded and what failed, for the log.
    public func reload(_ new: ServerConfiguration) async -> (reloaded: [String], failed: [String]) {
        var reloaded: [String] = [], failed: [String] = []
        if config.tls {
            do {
                let context = try TLSContext.server(certificatePath: new.serverCertificate, keyPath: new.serverKey)
                context.selectHTTP2WhenOffered()  // the original's gRPC clients, as at start
                tlsContext.withLock { $0 = context }
                reloaded.append("certificate \(new.serverCertificate)")
            } catch {
                failed.append("certificate \(new.serverCertificate): \(ErrorWording.text(error)) (the old one stays)")
            }
        }
        if let checker = tokenChecker, let secret = new.clientSecret {
            await checker.setClientSecret(secret)
            reloaded.append("client secret")
        }
        policy.withLock { current in
            var targets = new.targetPolicy
            targets.servicePorts = current.targetPolicy.servicePorts  // the ports bound at start stay this s2cs's own
            current = ReloadablePolicy(targetPolicy: targets, allowedIdentities: new.allowedIdentities, adminIdentities: new.adminIdentities)
        }
        if let refusal = dataPlane.sourceFenceRefusal, new.consAllowedSources != nil {
            // As at start: sources that cannot be enforced are not taken.
            await registry.setSources(peerGateways: new.peerGateways, consumers: nil)
            reloaded.append("--allowed-targets, --allowed-identities, --admin-identities, --peer-gateways")
            failed.append("\(ConsumerSources.flag): cannot be enforced with --type Stunnel (\(refusal)); consumer-side listeners still accept any source")
        } else {
            await registry.setSources(peerGateways: new.peerGateways, consumers: new.consAllowedSources)
            reloaded.append("--allowed-targets, --allowed-identities, --admin-identities, --peer-gateways, --cons-allowed-sources")
        }
        return (reloaded, failed)
    }

    /// The control certificate's notAfter (seconds since the epoch), as served now.
    var certificateNotAfter: Double? { tlsContext.withLock { $0 }?.certificateNotAfter }

    /// Whether new sessions are refused while existing ones go on.
    public var isDraining: Bool { drainingState.withLock { $0 } }

    /// Starts (true) or ends (false) draining; returns whether that changed anything.
    @discardableResult
    public func setDraining(_ draining: Bool) -> Bool {
        let changed = drainingState.withLock { state -> Bool in
            defer { state = draining }
            return state != draining
        }
        if changed {
            logger.info(draining ? "draining: new sessions are refused, existing ones go on (SIGUSR2 ends it)" : "draining ended: new sessions are accepted")
        }
        return changed
    }

    /// Alive: the session registry answers within `timeout` (a hung actor or a starved pool does not).
    public func isHealthy(timeout: Duration = .seconds(2)) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { _ = await self.registry.sessionCount(); return true }
            group.addTask { try? await Task.sleep(for: timeout); return false }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    /// Ready for new sessions: nil when it is, else why not (for `/readyz` and the log).
    public func notReadyReason() async -> String? {
        if stopping.withLock({ $0 }) { return "stopping" }
        if !accepting.withLock({ $0 }) { return "the control port is not accepting" }
        if isDraining { return "draining (SIGUSR1): no new sessions" }
        if let executable = dataPlane.executable, access(executable, X_OK) != 0 {
            return "the proxy \(executable) cannot be run: \(String(cString: strerror(errno)))"
        }
        guard await isHealthy() else { return "the session registry did not answer within 2 s" }
        return nil
    }

    /// Serves connection `id` of the table; with `refusing`, answers its first request with that
    /// status and closes.
    private func serve(_ socket: Socket, id: UInt64? = nil, refusing: Status? = nil, localAdmin: Bool = false) async {
        let accepted = ContinuousClock.now
        let peerAddress = localAdmin ? nil : socket.peerAddress
        let peer = localAdmin ? "admin-socket" : peerAddress.map(\.description) ?? "unknown"
        let client = localAdmin ? "local" : peerAddress?.host ?? "unknown"
        let log = logger.with("peer", peer)
        let opened: any ByteStream
        if localAdmin {
            opened = socket  // SciStream's own protocol in plaintext: the socket file's mode is the access control
        } else if let tls = tlsContext.withLock({ $0 }) {
            do {
                opened = try await TLSStream.accept(socket: socket, context: tls, deadline: accepted + config.frameTimeout)
            } catch {
                if error.kind == .peerIsPlaintext {
                    log.warning("plaintext client on the TLS control port: told it to use TLS")
                    let reply = Message.error(Status(.unavailable, "this s2cs requires TLS on its control channel: drop '--ssl False' from s2uc and pass the s2cs certificate with --server_cert"))
                    try? await socket.writeAll(reply.encoded(), deadline: .now + .seconds(2))
                } else {
                    log.debug("TLS handshake failed", ["error": ErrorWording.text(error)])
                }
                socket.close()
                return
            }
        } else {
            do {
                let first = try await socket.peek(max: 3, deadline: accepted + config.frameTimeout)
                if TLSProbe.looksLikeTLSClientHello(first) {
                    log.warning("TLS client on the plaintext control port (s2cs runs with --ssl=False): closed")
                    // Read what it sent before closing, so that it sees a clean close rather than a reset.
                    _ = try? await socket.read(max: 16384, deadline: .now + .milliseconds(200))
                    socket.close()
                    return
                }
            } catch {
                socket.close()
                return
            }
            opened = socket
        }
        // The original's gRPC clients on the same port (ControlServer+GRPC.swift).
        guard let stream = localAdmin ? opened : await routeGRPC(opened, client: client, log: log, refusing: refusing, deadline: accepted + config.frameTimeout,
                                           onCall: { [connectionTable] in if let id { connectionTable.proven(id) } }) else { return }
        defer { stream.close() }
        if let refusing {
            // Read the request first: closing with unread bytes would reset the connection before
            // the client reads the answer.
            _ = try? await stream.read(max: 65536, deadline: .now + .seconds(2))
            try? await stream.writeAll(Message.error(refusing).encoded(), deadline: .now + .seconds(2))
            return
        }

        // A complete frame must arrive within --frame-timeout of the accept, then of each reply: a
        // silent or trickling connection is closed instead of holding a slot.
        var decoder = FrameDecoder()
        var deadline = accepted + config.frameTimeout
        do {
            while true {
                let bytes: [UInt8]
                do {
                    bytes = try await stream.read(max: 65536, deadline: deadline)
                } catch {
                    let timedOut = error.kind == .timedOut
                    if timedOut && decoder.bufferedByteCount > 0 {
                        log.warning("frame not completed in time: closed", ["timeout": "\(config.frameTimeout)"])
                    } else if timedOut {
                        log.debug("no request in time: closed", ["timeout": "\(config.frameTimeout)"])
                    } else {
                        log.debug("connection ended", ["error": ErrorWording.text(error)])
                    }
                    return
                }
                if bytes.isEmpty {
                    if decoder.bufferedByteCount > 0 {
                        log.warning("connection closed inside a frame", ["bytes": "\(decoder.bufferedByteCount)"])
                    }
                    return
                }
                decoder.append(bytes)
                while true {
                    let next: Message?
                    do {
                        next = try decoder.nextMessage()
                    } catch {
                        guard case .invalidSessionID(let kind, let text) = error else { throw error }
                        // A whole frame whose uid is not a session id: answered as its kind, and read on.
                        let reply = Self.invalidSessionIDReply(kind: kind, text: text, log: log)
                        // A refusal like any other: audited (the event is the refused frame's kind).
                        let status = WireError.invalidSessionID(kind: kind, text: text).status
                        audit?.record(AuditEntry(event: kind == 0x01 ? "request" : kind == 0x02 ? "hello" : kind == 0x03 ? "update" : "release", client: client,
                                                 identity: nil, session: SessionID.shortPrefix(text), role: nil,
                                                 status: "\(status.code)", reason: status.message))
                        try await stream.writeAll(Self.frame(reply, log: log), deadline: .now + config.frameTimeout)
                        deadline = .now + config.frameTimeout
                        continue
                    }
                    guard let message = next else { break }
                    if let id { connectionTable.proven(id) }
                    metrics.received(message)
                    let started = ContinuousClock.now
                    let reply = await handle(message, client: client, log: log, localAdmin: localAdmin)
                    metrics.answered(message, with: reply, elapsed: .now - started)
                    try await stream.writeAll(Self.frame(reply, log: log), deadline: .now + config.frameTimeout)
                    deadline = .now + config.frameTimeout
                }
            }
        } catch let error as WireError {
            let text = ErrorWording.wire(error)
            log.warning("bad frame: closed", ["error": text])
            let reply = Message.error(Status(.invalidArgument, "bad frame: \(text)"))
            try? await stream.writeAll(reply.encoded(), deadline: .now + .seconds(2))
        } catch {
            log.debug("connection ended", ["error": ErrorWording.text(error)])
        }
    }
}

extension ControlServer {
    /// A reply as a frame, encoded with the checking encoder: a reply that would not fit the format
    /// (a field over its limit, a frame over 1 MiB) is never cut silently; the client gets an error
    /// that says so, and the log says which.
    static func frame(_ reply: Message, log: Logger) -> [UInt8] {
        do {
            return try reply.checkedEncoded()
        } catch {
            log.error("reply does not fit one frame", ["kind": reply.name, "error": ErrorWording.text(error)])
            return Message.error(Status(.internalError, "the reply to this request does not fit one protocol frame (\(ErrorWording.text(error)))")).encoded()
        }
    }
}

public enum ServerError: Error, CustomStringConvertible {
    case cannotListen(address: String, reason: String)

    public var description: String {
        switch self {
        case .cannotListen(let address, let reason):
            "cannot listen on \(address): \(reason) (is another s2cs running there? choose another --port)"
        }
    }
}
