import Foundation
import Testing
import SciStreamWire
@testable import SciStreamClient

/// A hello's names are resolved only once its uid is valid, its session waits for it and it names
/// no more targets than the session has listeners: a stranger cannot make s2cs look names up (slow,
/// and a way to reach a resolver from the gateway) with hellos that go nowhere. The names below do
/// not resolve: s2cs's log says "cannot resolve" for every name it tried.
@Suite struct HelloTests {
    static let unresolvable = "no-such-host.invalid:5001"

    @Test func aBadUIDOrAMissingSessionIsRefusedBeforeAnyNameIsResolved() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        let badUID = try await repliesToForgedFrames(frame(.hello(Hello(token: "INVALID_TOKEN", uid: .mock, role: .prod, prodListeners: [Self.unresolvable])), forgingUID: "not-a-uid"), port: daemon.port)
        guard case .helloReply(let first) = badUID.first, badUID.count == 1 else { Issue.record("\(badUID)"); return }
        #expect(first.message == "'not-a-uid' is not a session id: use the uid the inbound request printed, a UUID such as 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3")
        #expect(first.code == .invalidArgument && first.message.contains("uid"), "\(first)")
        let noSession = try await callOnce(daemon.target, .hello(Hello(token: "INVALID_TOKEN", uid: .newRandom(), role: .prod, prodListeners: [Self.unresolvable])))
        guard case .helloReply(let second) = noSession else { Issue.record("\(noSession)"); return }
        #expect(second.code == .notFound, "\(second)")
        #expect(!daemon.log.contains("cannot resolve"), "a name was resolved: \(daemon.log)")
        daemon.expectNothingStarted()
    }

    @Test func aHelloNamesAtMostNumConnTargets() async throws {
        let daemon = try await Daemon(tls: false)
        defer { daemon.stop() }
        let uid = SessionID.random()
        let requestConnection = try await ControlConnection.open(daemon.target)
        let pending = Task { () async throws -> RequestReply in
            try await requestConnection.request(Request(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, numConn: 1, rate: 0, listenPorts: []), timeout: .seconds(30))
        }
        let helloConnection = try await ControlConnection.open(daemon.target)
        // Two targets for one listener: refused, nothing resolved, and the session still waits.
        let tooMany = try await helloConnection.hello(Hello(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, prodListeners: [Self.unresolvable, "127.0.0.1:5002"]))
        #expect(tooMany.code == .invalidArgument && tooMany.message.contains("num_conn 1"), "\(tooMany)")
        #expect(!daemon.log.contains("cannot resolve"), "a name was resolved: \(daemon.log)")
        // A malformed target: refused, and the session still waits for a good hello.
        let malformed = try await helloConnection.hello(Hello(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, prodListeners: ["127.0.0.1:99999"]))
        #expect(malformed.code == .invalidArgument, "\(malformed)")
        let one = try await helloConnection.hello(Hello(token: "INVALID_TOKEN", uid: .checked(uid), role: .prod, prodListeners: ["127.0.0.1:5002"]))
        #expect(one.code == .ok, "\(one)")
        let reply = try await pending.value
        #expect(reply.status.code == .ok && reply.prodListeners == ["127.0.0.1:5002"], "\(reply)")
        #expect(try await helloConnection.release(Release(token: "INVALID_TOKEN", uid: .checked(uid))).code == .ok)
    }
}
