import SciStreamClient
import SciStreamWire

/// A failure of one benchmark session, with the step it happened at.
struct BenchError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The steps of one session as `s2uc inbound_request` takes them (Mock s2cs, role PROD): the request
/// on one connection, its hello on a second, then the update (and here the release) on the second.
struct SessionSteps: Sendable {
    static let token = "INVALID_TOKEN"
    /// The producer application the hello names (never contacted by a Mock s2cs).
    static let producer = "127.0.0.1:5001"

    let target: ControlTarget
    let numConn: UInt32

    func request(uid: String) -> Request {
        Request(token: Self.token, uid: .bench(uid), role: .prod, numConn: numConn, rate: 10000, listenPorts: [])
    }

    func hello(uid: String) -> Hello {
        Hello(token: Self.token, uid: .bench(uid), role: .prod, prodListeners: [Self.producer])
    }

    func open() async throws(BenchError) -> ControlConnection {
        do { return try await ControlConnection.open(target) } catch { throw BenchError("connect: \(error)") }
    }

    /// Sends the hello on `connection` and checks its reply.
    func sendHello(uid: String, on connection: ControlConnection) async throws(BenchError) {
        let status: Status
        do { status = try await connection.hello(hello(uid: uid), timeout: .seconds(60)) } catch { throw BenchError("hello: \(error)") }
        guard status.isOK else { throw BenchError("hello: \(status)") }
    }

    /// Checks the reply to the request and returns the producer listeners it carries (the update's targets).
    func checkRequestReply(_ answer: RequestReply) throws(BenchError) -> [String] {
        guard answer.status.isOK else { throw BenchError("request: \(answer.status)") }
        guard answer.listeners.count == Int(numConn) else {
            throw BenchError("request: \(answer.listeners.count) listeners for num_conn \(numConn)")
        }
        return answer.prodListeners
    }

    func sendUpdate(uid: String, targets: [String], on connection: ControlConnection) async throws(BenchError) {
        let answer: UpdateReply
        do {
            answer = try await connection.update(Update(token: Self.token, uid: .bench(uid), role: .prod, remoteListeners: targets))
        } catch {
            throw BenchError("update: \(error)")
        }
        guard answer.status.isOK else { throw BenchError("update: \(answer.status)") }
    }

    func sendRelease(uid: String, on connection: ControlConnection) async throws(BenchError) {
        let status: Status
        do { status = try await connection.release(Release(token: Self.token, uid: .bench(uid))) } catch {
            throw BenchError("release: \(error)")
        }
        guard status.isOK else { throw BenchError("release: \(status)") }
    }

    /// The sessions the server holds, as (state, count).
    func states() async throws(BenchError) -> [String: Int] {
        let connection = try await open()
        let list: ListReply
        do { list = try await connection.list(ListSessions(token: Self.token), timeout: .seconds(60)) } catch {
            throw BenchError("list: \(error)")
        }
        guard list.status.isOK else { throw BenchError("list: \(list.status)") }
        var counts: [String: Int] = [:]
        for session in list.sessions { counts[session.state, default: 0] += 1 }
        return counts
    }

    /// Request, hello and update, as `s2uc inbound_request` does: the uid, the listeners the reply
    /// named, and the hello's connection. The session stays until released.
    func establish() async throws(BenchError) -> (uid: String, listeners: [String], connection: ControlConnection) {
        let uid = SessionID.random()
        let requestConnection = try await open()
        let request = request(uid: uid)
        // The request's reply waits for the hello: it is read by its own task, as s2uc does.
        let pendingReply = Task { () async throws(ClientError) -> RequestReply in
            try await requestConnection.request(request)
        }
        defer { pendingReply.cancel() }  // after a failure: do not wait for a reply that will not come
        let helloConnection = try await open()
        try await sendHello(uid: uid, on: helloConnection)
        let reply: RequestReply
        do { reply = try await pendingReply.value } catch { throw BenchError("request: \(error)") }
        let targets = try checkRequestReply(reply)
        try await sendUpdate(uid: uid, targets: targets, on: helloConnection)
        return (uid, reply.listeners, helloConnection)
    }

    /// One whole session, as s2uc inbound_request and then s2uc release do it. The release goes on the
    /// hello's connection, or on a connection of its own (as a separate `s2uc release` does) when
    /// `separateRelease` is set.
    func complete(separateRelease: Bool) async throws(BenchError) {
        let (uid, _, helloConnection) = try await establish()
        if separateRelease {
            let releaseConnection = try await open()
            try await sendRelease(uid: uid, on: releaseConnection)
        } else {
            try await sendRelease(uid: uid, on: helloConnection)
        }
    }
}

extension SessionID {
    /// The session id of a uid the bench made (`SessionID.random()`, always canonical).
    static func bench(_ uid: String) -> SessionID {
        SessionID(uid)!  // safe: SessionID.random() makes only canonical uids
    }
}
