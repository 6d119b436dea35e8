import Testing
import SciStreamSystem
@testable import SciStreamDataPlane

/// Readiness: which listener addresses have a LISTEN socket, exactly (a proxy binds what it is told).
@Suite("ListenerProbe")
struct ListenerProbeTests {
    @Test func aListenerCountsForItsOwnAddressOnlyAndNotOnceClosed() throws {
        let port = try freePort()
        let v4 = try ListenerProbe.addresses(of: ConfigEndpoint(loopback(port))!)  // safe: a valid endpoint
        let v6 = try ListenerProbe.addresses(of: ConfigEndpoint(ProxyEndpoint(host: "::1", port: port))!)  // safe: valid
        let listener = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: port))
        let table = try ListenerProbe.listeningSockets(on: v4 + v6)
        #expect(ListenerProbe.isListening(v4, in: table))
        #expect(!ListenerProbe.isListening(v6, in: table), "a listener on 127.0.0.1 is not one on ::1")
        listener.close()
        #expect(!ListenerProbe.isListening(v4, in: try ListenerProbe.listeningSockets(on: v4)))
    }
}
