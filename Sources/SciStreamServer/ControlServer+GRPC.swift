import Synchronization
import SciStreamWire
import SciStreamMetrics
import SciStreamSystem
import SciStreamTLS
import SciStreamGRPC
import SciStreamCommandLine

/// The original SciStream's gRPC service (`scistream.Control`: req, hello, update, release) on the
/// control port, beside SciStream's own protocol: an HTTP/2 client is told apart by ALPN "h2" on
/// TLS or by its connection preface (`PRI * HTTP/2.0...`, which SciStream's framing could never
/// start with: it would announce a 1.3 GB frame). Each call becomes the request message of the
/// same kind and goes through `handle`, so it meets exactly the same authentication, quotas,
/// target policy and refusals; a refusal is the gRPC status of the same name.
extension ControlServer {
    /// Serves the connection as gRPC when it is one; otherwise returns the stream for SciStream's
    /// own protocol (with any bytes read to tell them apart put back). Nil: nothing left to serve.
    func routeGRPC(_ stream: any ByteStream, client: String, log: Logger, refusing: Status?,
                   deadline: ContinuousClock.Instant, onCall: @escaping @Sendable () -> Void = {}) async -> (any ByteStream)? {
        let preface = Array(http2Preface.prefix(3))  // "PRI"
        if let socket = stream as? Socket {
            guard let first = try? await socket.peek(max: 3, deadline: deadline), first == preface else { return stream }
            await serveGRPC(stream, initial: [], client: client, log: log, refusing: refusing, onCall: onCall)
            return nil
        }
        if let tls = stream as? TLSStream, tls.alpnProtocol == "h2" {
            await serveGRPC(stream, initial: [], client: client, log: log, refusing: refusing, onCall: onCall)
            return nil
        }
        // TLS without ALPN: the first bytes decide.
        var first: [UInt8] = []
        while first.count < preface.count && first == Array(preface.prefix(first.count)) {
            guard let bytes = try? await stream.read(max: 65536, deadline: deadline), !bytes.isEmpty else {
                stream.close()
                return nil
            }
            first += bytes
        }
        guard first.starts(with: preface) else { return PrefixedStream(stream, first) }
        await serveGRPC(stream, initial: first, client: client, log: log, refusing: refusing, onCall: onCall)
        return nil
    }

    private enum GRPCEvent: Sendable {
        case bytes([UInt8])
        case ended(timedOut: Bool, reason: String)
        case answer(UInt32, GRPCResponse)
    }

    /// One HTTP/2 connection: a reader task feeds bytes, each complete call runs in its own task
    /// (a req waits for its hello, which comes on another stream of the same connection), and this
    /// task alone writes. Closes the stream when done.
    /// `onCall` runs for each complete call (the connection has proven itself: `ConnectionTable`).
    private func serveGRPC(_ stream: any ByteStream, initial: [UInt8], client: String, log parent: Logger, refusing: Status?,
                           onCall: @escaping @Sendable () -> Void) async {
        let log = parent.with("protocol", "grpc")
        let timeout = config.frameTimeout
        var connection = HTTP2ServerConnection()
        let (events, sink) = AsyncStream.makeStream(of: GRPCEvent.self)
        // When the reader gives up: nil while calls are being handled (a req waits for its hello).
        let readDeadline = SharedDeadline(.now + timeout)
        var lastProgress = ContinuousClock.now
        var partialSince: ContinuousClock.Instant? = nil
        defer { stream.close() }

        await withDiscardingTaskGroup { group in
            group.addTask {
                while true {
                    let deadline = readDeadline.value.withLock { $0 } ?? .now + timeout
                    do throws(StreamError) {
                        let bytes = try await stream.read(max: 65536, deadline: deadline)
                        guard !bytes.isEmpty else {
                            sink.yield(.ended(timedOut: false, reason: "closed by the client"))
                            return
                        }
                        sink.yield(.bytes(bytes))
                    } catch {
                        let timedOut = error.kind == .timedOut
                        if timedOut, readDeadline.value.withLock({ $0.map { $0 > .now } ?? true }) { continue }
                        sink.yield(.ended(timedOut: timedOut, reason: ErrorWording.text(error)))
                        return
                    }
                }
            }
            func send(_ bytes: [UInt8]) async -> Bool {
                guard !bytes.isEmpty else { return true }
                do {
                    try await stream.writeAll(bytes, deadline: .now + timeout)
                    return true
                } catch {
                    log.debug("connection ended", ["error": ErrorWording.text(error)])
                    return false
                }
            }
            var pending: [GRPCEvent] = initial.isEmpty ? [] : [.bytes(initial)]
            var iterator = events.makeAsyncIterator()
            var open = await send(connection.start())
            while open {
                let event: GRPCEvent
                if !pending.isEmpty {
                    event = pending.removeFirst()
                } else if let next = await iterator.next() {
                    event = next
                } else {
                    break
                }
                switch event {
                case .bytes(let bytes):
                    let received: (output: [UInt8], calls: [GRPCCall])
                    do throws(GRPCWireError) {
                        received = try connection.receive(bytes)
                    } catch {
                        log.warning("bad HTTP/2 input: closed", ["error": error.description])
                        if case .connection(let code, let reason) = error {
                            _ = await send(connection.goAway(code, debug: reason))
                        }
                        open = false
                        break
                    }
                    open = await send(received.output)
                    for call in received.calls {
                        onCall()
                        lastProgress = .now
                        if let refusing {
                            open = await send(connection.respond(call.streamID, .failure(code: Int(refusing.code.rawValue), message: refusing.message)))
                            open = await send(connection.goAway(.noError)) && open
                            continue
                        }
                        group.addTask {
                            let answer = await self.answer(call, client: client, log: log)
                            sink.yield(.answer(call.streamID, answer))
                        }
                    }
                case .answer(let streamID, let response):
                    lastProgress = .now
                    open = await send(connection.respond(streamID, response))
                case .ended(let timedOut, let reason):
                    if timedOut {
                        log.debug(partialSince == nil ? "idle gRPC connection: closed" : "gRPC request not completed in time: closed", ["timeout": "\(timeout)"])
                        _ = await send(connection.goAway(.noError, debug: "idle"))
                    } else {
                        log.debug("connection ended", ["reason": reason])
                    }
                    open = false
                }
                if connection.goingAway && connection.activeStreamCount == 0 { open = false }
                // A request in progress has --frame-timeout from when it started; calls being
                // handled hold the connection without a deadline; an idle connection gets
                // --frame-timeout from its last call.
                let partial = connection.receivingStreamCount > 0 || connection.bufferedByteCount > 0
                partialSince = partial ? (partialSince ?? .now) : nil
                let deadline: ContinuousClock.Instant? =
                    if let partialSince { partialSince + timeout }
                    else if connection.activeStreamCount > 0 { nil }
                    else { lastProgress + timeout }
                readDeadline.value.withLock { $0 = deadline }
            }
            // Handlers still waiting (a req for its hello) finish on their own; their answers are dropped.
            stream.close()
            sink.finish()
            group.cancelAll()
        }
    }

    // MARK: - Calls

    /// The answer to one call: decoded, turned into the request message of the same kind, handled.
    private func answer(_ call: GRPCCall, client: String, log: Logger) async -> GRPCResponse {
        var token = call.metadata("authorization") ?? ""
        if token.lowercased().hasPrefix("bearer ") { token = String(token.dropFirst(7)) }
        do {
            switch call.path {
            case ControlProto.path("req"):
                let request = try ControlProto.Request(decoding: call.message)
                let limit = SessionLimits.maxConnectionsPerSession
                guard request.numConn >= 0 else { return Self.failure(.invalidArgument, "num_conn \(request.numConn) is out of range: use 1 to \(limit)") }
                guard request.rate >= 0 else { return Self.failure(.invalidArgument, "rate \(request.rate) is negative") }
                guard let uid = SessionID(request.uid) else { return Self.failure(WireError.invalidSessionID(kind: 0x01, text: request.uid).status) }
                let message = Message.request(Request(token: token, uid: uid, role: try Self.role(request.role),
                                                      numConn: UInt32(request.numConn), rate: UInt32(request.rate), listenPorts: []))
                guard case .requestReply(let reply) = await handled(message, client: client, log: log) else { return Self.internalFailure }
                guard reply.status.isOK else { return Self.failure(reply.status) }
                return .message(ControlProto.Response(listeners: reply.listeners, prodListeners: reply.prodListeners).encoded)

            case ControlProto.path("hello"):
                let hello = try ControlProto.Hello(decoding: call.message)
                var role = try Self.role(hello.role)
                var listeners = hello.prodListeners
                guard let uid = SessionID(hello.uid) else { return Self.failure(WireError.invalidSessionID(kind: 0x02, text: hello.uid).status) }
                // The req may still be on its way (its stream is handled concurrently): wait for it
                // as the hello itself would.
                func session() async -> SessionRegistry.Session? {
                    await registry.sessionAwaitingItsRequest(uid)
                }
                if role == .prod, let found = await session(), found.role == .cons {
                    // The original s2uc (1.2.1) says PROD in the hello of an outbound request and the
                    // original s2cs never looked; its list is the consumer's receivers, unused there.
                    role = .cons
                    listeners = []
                }
                let message = Message.hello(Hello(token: token, uid: uid, role: role, prodListeners: listeners))
                guard case .helloReply(let status) = await handled(message, client: client, log: log) else { return Self.internalFailure }
                guard status.isOK else { return Self.failure(status) }
                // As the original answers: CONS hellos get the session's listeners.
                let consListeners = role == .cons ? (await session()).map { registry.reported($0.listeners, role: .cons) } ?? [] : []
                return .message(ControlProto.AppResponse(message: role == .prod ? "Sending Prod listeners..." : "Sending listeners...",
                                                         listeners: consListeners).encoded)

            case ControlProto.path("update"):
                let update = try ControlProto.UpdateTargets(decoding: call.message)
                guard let uid = SessionID(update.uid) else { return Self.failure(WireError.invalidSessionID(kind: 0x03, text: update.uid).status) }
                let message = Message.update(Update(token: token, uid: uid, role: try Self.role(update.role), remoteListeners: update.remoteListeners))
                guard case .updateReply(let reply) = await handled(message, client: client, log: log) else { return Self.internalFailure }
                guard reply.status.isOK else { return Self.failure(reply.status) }
                // As the original: the targets, listener i forwarding to target i % count.
                let targets = update.remoteListeners.isEmpty ? [] : reply.listeners.indices.map { update.remoteListeners[$0 % update.remoteListeners.count] }
                return .message(ControlProto.Response(listeners: reply.listeners, prodListeners: targets).encoded)

            case ControlProto.path("release"):
                let release = try ControlProto.Release(decoding: call.message)
                guard case .releaseReply(let status) = await handled(.release(Release(token: token, session: SessionName(release.uid))), client: client, log: log) else { return Self.internalFailure }
                guard status.isOK else { return Self.failure(status) }
                return .message(ControlProto.Response(listeners: [], prodListeners: []).encoded)

            default:
                log.info("unknown gRPC method", ["path": escapedForTerminal(call.path, limit: 100)])
                return Self.failure(.unimplemented, "unknown method: this s2cs serves scistream.Control's req, hello, update and release")
            }
        } catch let error as StatusError {
            return Self.failure(error.status)
        } catch {
            return Self.failure(.invalidArgument, "bad request message: \(error)")
        }
    }

    /// `handle`, counted in the metrics as every request is.
    private func handled(_ message: Message, client: String, log: Logger) async -> Message {
        metrics.received(message)
        let started = ContinuousClock.now
        let reply = await handle(message, client: client, log: log)
        metrics.answered(message, with: reply, elapsed: .now - started)
        return reply
    }

    private static func role(_ text: String) throws(StatusError) -> Role {
        switch text {
        case "PROD": return .prod
        case "CONS": return .cons
        default: throw StatusError(.invalidArgument, "role '\(escapedForTerminal(text, limit: 20))' is neither PROD nor CONS")
        }
    }

    private static func failure(_ code: StatusCode, _ message: String) -> GRPCResponse {
        .failure(code: Int(code.rawValue), message: message)
    }

    private static func failure(_ status: Status) -> GRPCResponse { failure(status.code, status.message) }

    private static let internalFailure = failure(.internalError, "unexpected reply kind")
}

/// The reader's deadline, set by the connection's task (a box: a Mutex cannot be captured).
private final class SharedDeadline: Sendable {
    let value: Mutex<ContinuousClock.Instant?>
    init(_ deadline: ContinuousClock.Instant?) { value = Mutex(deadline) }
}

/// A stream whose first read returns bytes already read from it (to tell the protocols apart).
final class PrefixedStream: ByteStream, @unchecked Sendable {
    // @unchecked: `prefix` is touched only by `read`, and a ByteStream has one reading task at a time.
    private let base: any ByteStream
    private var prefix: [UInt8]

    init(_ base: any ByteStream, _ prefix: [UInt8]) {
        self.base = base
        self.prefix = prefix
    }

    func read(max: Int, deadline: ContinuousClock.Instant?) async throws(StreamError) -> [UInt8] {
        guard prefix.isEmpty else {
            let count = Swift.min(max, prefix.count)
            defer { prefix.removeFirst(count) }
            return Array(prefix.prefix(count))
        }
        return try await base.read(max: max, deadline: deadline)
    }

    func writeAll(_ bytes: [UInt8], deadline: ContinuousClock.Instant?) async throws(StreamError) {
        try await base.writeAll(bytes, deadline: deadline)
    }

    func close() { base.close() }
}
