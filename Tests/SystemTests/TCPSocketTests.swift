#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import SciStreamSystem

/// The kernel's list of TCP sockets by state and port (netlink sock_diag), against real sockets.
@Suite("TCPSocket")
struct TCPSocketTests {
    /// The inode of a descriptor's socket, as /proc/self/fd shows it ("socket:[inode]").
    static func inode(_ fd: Int32) throws -> UInt64 {
        var target = [CChar](repeating: 0, count: 64)
        let count = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
        let link = String(decoding: target.prefix(max(count, 0)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return try #require(UInt64(link.dropFirst("socket:[".count).dropLast()), "\(link)")
    }

    @Test(arguments: [("127.0.0.1", [127, 0, 0, 1]), ("::1", [UInt8](repeating: 0, count: 15) + [1])] as [(String, [UInt8])])
    func aListenerIsFoundWithItsAddressAndInode(host: String, bytes: [UInt8]) throws {
        let listener = try Socket.listen(on: SocketAddress.resolve(host: host, port: 0))
        defer { listener.close() }
        let port = try #require(listener.localAddress?.port)
        let found = try TCPSocket.find([.listen], ports: port...port)
        #expect(found == [TCPSocket(address: bytes, port: port, state: .listen, inode: try Self.inode(listener.fd))], "\(found)")
    }

    @Test func aClosedListenerIsNotFound() throws {
        let listener = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0))
        let port = try #require(listener.localAddress?.port)
        let inode = try Self.inode(listener.fd)
        #expect(try TCPSocket.find([.listen], ports: port...port).map(\.inode) == [inode])
        listener.close()
        #expect(!(try TCPSocket.find([.listen], ports: port...port).map(\.inode).contains(inode)))
    }

    @Test func onlyListeningSocketsInTheRangeAreListed() async throws {
        let a = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0))
        let b = try Socket.listen(on: SocketAddress.resolve(host: "::1", port: 0))
        defer { a.close(); b.close() }
        let portA = try #require(a.localAddress?.port), portB = try #require(b.localAddress?.port)
        // A connection to A: its two ends are ESTABLISHED sockets, the client's maybe on a port near A's.
        let client = try await Socket.connect(to: SocketAddress.resolve(host: "127.0.0.1", port: portA), deadline: .now + .seconds(5))
        defer { client.close() }
        let server = try await a.accept()
        defer { server.close() }
        let clientPort = try #require(client.localAddress?.port)
        let low = min(portA, portB, clientPort), high = max(portA, portB, clientPort)
        let all = try TCPSocket.find([.listen], ports: low...high)
        let inodes = Set(all.map(\.inode))
        let (inodeA, inodeB) = (try Self.inode(a.fd), try Self.inode(b.fd))
        let (inodeClient, inodeServer) = (try Self.inode(client.fd), try Self.inode(server.fd))
        #expect(inodes.contains(inodeA) && inodes.contains(inodeB))
        #expect(!inodes.contains(inodeClient) && !inodes.contains(inodeServer), "not listening")
        #expect(all.allSatisfy { (low...high).contains($0.port) })
        // Established: both ends of the connection, not the listeners.
        let established = Set(try TCPSocket.find([.established], ports: low...high).map(\.inode))
        #expect(established.isSuperset(of: [inodeClient, inodeServer]) && established.isDisjoint(with: [inodeA, inodeB]))
        // Only A's port: B is filtered out by the kernel.
        let onlyA = try TCPSocket.find([.listen], ports: portA...portA)
        #expect(Set(onlyA.map(\.inode)) == [inodeA])
    }

    @Test func manyListenersAreAllReturned() throws {
        // More than the first buffer holds (64): the query is repeated with room for all.
        var listeners: [Socket] = []
        defer { listeners.forEach { $0.close() } }
        for _ in 0..<150 { listeners.append(try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0), backlog: 1)) }
        let ports = listeners.compactMap { $0.localAddress?.port }
        let found = Set(try TCPSocket.find([.listen], ports: ports.min()!...ports.max()!).map(\.inode))  // safe: 150 ports
        for listener in listeners {
            let inode = try Self.inode(listener.fd)
            #expect(found.contains(inode))
        }
    }
}
