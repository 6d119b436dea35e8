import Foundation
import Testing
import SciStreamWire
import SciStreamSystem
@testable import SciStreamDataPlane
@testable import SciStreamServer
import TestPorts

/// The registry's own rules, in-process with the Mock data plane (no proxy binary, no s2cs): port
/// checks, per-client quotas, and who may act on a session.
@Suite struct RegistryPolicyTests {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("scistream-servertests-\(UUID().uuidString)")

    func make(ports: PortBlock, authenticated: Bool = false, portsPerClient: Int? = nil) throws -> SessionRegistry {
        var config = ServerConfiguration()
        config.portRange = try PortRange(lower: ports.lower, upper: ports.upper)
        config.listenerIP = "127.0.0.1"
        config.maxPortsPerClient = portsPerClient ?? ports.count
        config.maxPendingPorts = ports.count
        config.configFolder = folder.path
        if authenticated {
            config.clientID = "00000000-0000-0000-0000-000000000001"
            config.clientSecret = "secret"
        }
        let logger = Logger(label: "test", level: .error, sink: .standardError)
        let dataPlane = try DataPlane(type: .mock, folder: folder.path, dataPlaneTLS: true, logger: logger, stopGrace: .seconds(1),
                                      searchPath: [], readinessTimeout: .seconds(5), checkListenersBeforeLaunch: true)
        return SessionRegistry(config: config, dataPlane: dataPlane, logger: logger)
    }

    static func request(role: Role = .prod, numConn: UInt32 = 1, ports: [UInt16] = []) -> (Request, SessionID) {
        let uid = SessionID.newRandom()
        return (Request(token: "", uid: uid, role: role, numConn: numConn, rate: 0, listenPorts: ports), uid)
    }

    /// A request left waiting for its hello (as s2uc's request does until the hello arrives).
    func pending(_ registry: SessionRegistry, _ caller: Caller, numConn: UInt32 = 1) async throws -> (SessionID, Task<RequestReply, any Error>) {
        let (request, uid) = Self.request(numConn: numConn)
        let task = Task { try await registry.request(request, uid: uid, caller: caller) }
        let deadline = ContinuousClock.now + .seconds(10)
        while await registry.sessionAwaitingItsRequest(uid) == nil, await !registry.snapshot().contains(where: { $0.uid == uid }) {
            guard ContinuousClock.now < deadline else { throw StatusError(.deadlineExceeded, "the request was not taken") }
            await Task.yield()
        }
        return (uid, task)
    }

    func refusal(_ body: () async throws -> Void) async -> StatusError? {
        do { try await body(); return nil } catch { return error as? StatusError }
    }

    @Test func listenPortsOutsideTheRangeAreRefusedAndHoldNothing() async throws {
        let ports = try PortBlock.reserve(4)
        let registry = try make(ports: ports)
        let (request, uid) = Self.request(role: .cons, numConn: 1, ports: [ports.upper + 1])
        let error = await refusal { _ = try await registry.request(request, uid: uid, caller: .anonymous("127.0.0.1")) }
        #expect(error?.status.code == .invalidArgument && error?.status.message.contains("outside this s2cs's --port-range \(ports)") == true, "\(String(describing: error))")
        #expect(await registry.portPool().held == 0)
        #expect(await registry.sessionCount() == 0)
    }

    @Test func listenPortsAreForConsumerSessionsAndAtMostNumConn() async throws {
        let ports = try PortBlock.reserve(4)
        let registry = try make(ports: ports)
        let (prod, prodUID) = Self.request(role: .prod, numConn: 1, ports: [ports.lower])
        let prodError = await refusal { _ = try await registry.request(prod, uid: prodUID, caller: .anonymous("127.0.0.1")) }
        #expect(prodError?.status.code == .invalidArgument && prodError?.status.message.contains("only for outbound (CONS)") == true, "\(String(describing: prodError))")
        let (many, manyUID) = Self.request(role: .cons, numConn: 1, ports: [ports.lower, ports.lower + 1])
        let manyError = await refusal { _ = try await registry.request(many, uid: manyUID, caller: .anonymous("127.0.0.1")) }
        #expect(manyError?.status.code == .invalidArgument && manyError?.status.message.contains("num_conn is 1") == true, "\(String(describing: manyError))")
        #expect(await registry.portPool().held == 0)
    }

    @Test func aPortInUseByAnotherProcessIsNeverHandedOut() async throws {
        let ports = try PortBlock.reserve(2)
        let registry = try make(ports: ports)
        let squatter = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: ports.lower), backlog: 1)
        defer { squatter.close() }
        let (request, uid) = Self.request(role: .cons, numConn: 1, ports: [ports.lower])
        let error = await refusal { _ = try await registry.request(request, uid: uid, caller: .anonymous("127.0.0.1")) }
        #expect(error?.status.code == .resourceExhausted && error?.status.message.contains("port \(ports.lower) on 127.0.0.1 is already in use") == true, "\(String(describing: error))")
        // Allocated ports skip it: the one free port is the other.
        let (uidTaken, waiting) = try await pending(registry, .anonymous("127.0.0.1"))
        #expect(await registry.snapshot().first { $0.uid == uidTaken }?.ports == [ports.upper])
        _ = try await registry.release(uidTaken, caller: .anonymous("127.0.0.1"))
        _ = await waiting.result
        #expect(await registry.portPool().held == 0)
    }

    @Test func aClientOverItsPortQuotaIsRefusedAndAnotherIsNot() async throws {
        let ports = try PortBlock.reserve(6)
        let registry = try make(ports: ports, portsPerClient: 2)
        let first = Caller.anonymous("127.0.0.2")
        let (held, waiting) = try await pending(registry, first, numConn: 2)
        let (request, uid) = Self.request()
        let error = await refusal { _ = try await registry.request(request, uid: uid, caller: first) }
        #expect(error?.status.code == .resourceExhausted && error?.status.message.contains("client 127.0.0.2 holds 2") == true
                && error?.status.message.contains("--max-ports-per-client") == true, "\(String(describing: error))")
        let (other, otherWaiting) = try await pending(registry, .anonymous("127.0.0.3"), numConn: 2)
        #expect(await registry.portPool().held == 4)
        for (uid, caller) in [(held, first), (other, Caller.anonymous("127.0.0.3"))] { _ = try await registry.release(uid, caller: caller) }
        _ = await waiting.result
        _ = await otherWaiting.result
        #expect(await registry.portPool().held == 0)
    }

    @Test func onlyItsOwnerOrAnAdminReleasesASession() async throws {
        let ports = try PortBlock.reserve(2)
        let registry = try make(ports: ports, authenticated: true)
        let owner = Caller(address: "127.0.0.1", subject: "owner-sub", username: "owner@example.org")
        let stranger = Caller(address: "127.0.0.1", subject: "stranger-sub", username: "stranger@example.org")
        var admin = Caller(address: "127.0.0.9", subject: "admin-sub", username: "admin@example.org")
        admin.admin = true
        let (uid, waiting) = try await pending(registry, owner)
        let error = await refusal { _ = try await registry.release(uid, caller: stranger) }
        #expect(error?.status.code == .permissionDenied && error?.status.message == "session \(uid.prefix) belongs to another identity", "\(String(describing: error))")
        #expect(await registry.sessionCount() == 1, "a refused release changes nothing")
        // What list and the metrics page go by: the listing's entry.
        let entry = try #require(await registry.listing().entries.first)
        #expect(entry.visible(to: owner) && !entry.visible(to: stranger) && entry.visible(to: admin))
        _ = try await registry.release(uid, caller: admin)
        _ = await waiting.result
        #expect(await registry.sessionCount() == 0)
        #expect(await registry.portPool().held == 0)
    }

    @Test func withoutAuthenticationASessionIsItsRequestersAddress() async throws {
        let ports = try PortBlock.reserve(2)
        let registry = try make(ports: ports)
        let (uid, waiting) = try await pending(registry, .anonymous("127.0.0.2"))
        let entry = try #require(await registry.listing().entries.first)
        #expect(entry.visible(to: .anonymous("127.0.0.2")) && !entry.visible(to: .anonymous("127.0.0.3")))
        _ = try await registry.release(uid, caller: .anonymous("127.0.0.2"))
        _ = await waiting.result
    }
}
