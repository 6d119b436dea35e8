import Foundation
import Synchronization
import COpenSSL
import SciStreamSystem
import SciStreamTLS

/// A SHA-256 that also counts the bytes and gives its digest in hex.
final class Digest {
    private let sha = SHA256Digest()
    private(set) var count = 0
    func update(_ bytes: [UInt8]) {
        count += bytes.count
        sha.update(bytes)
    }
    func finish() -> String { sha.finish().map { String(format: "%02x", $0) }.joined() }
}

/// The producer application: accepts connections on loopback and digests everything each one sends.
final class ProducerApp: @unchecked Sendable {  // `results` is only touched by the serving task, then read after it ends
    let listener: Socket
    let port: UInt16
    private var serving: Task<[(bytes: Int, sha256: String)], Never>? = nil
    private let received = Atomic(0)

    /// Bytes received so far, on every connection.
    var bytesReceived: Int { received.load(ordering: .relaxed) }

    /// Waits until at least `count` bytes have arrived (true), or `timeout` passes (false).
    func awaitBytes(_ count: Int, timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while bytesReceived < count {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }

    init(expectedConnections: Int) throws {
        listener = try Socket.listen(on: SocketAddress.resolve(host: "127.0.0.1", port: 0))
        port = listener.localAddress?.port ?? 0
        let listener = self.listener
        serving = Task { [self] in
            await withTaskGroup(of: (Int, String).self) { group in
                for _ in 0..<expectedConnections {
                    guard let socket = try? await listener.accept() else { break }
                    group.addTask {
                        let digest = Digest()
                        while let chunk = try? await socket.read(max: 1 << 20, deadline: .now + .seconds(60)), !chunk.isEmpty {
                            digest.update(chunk)
                            self.received.add(chunk.count, ordering: .relaxed)
                        }
                        socket.close()
                        return (digest.count, digest.finish())
                    }
                }
                var results: [(bytes: Int, sha256: String)] = []
                for await result in group { results.append(result) }
                return results
            }
        }
    }

    /// Waits for the expected connections to finish (or the listener to be closed).
    func results() async -> [(bytes: Int, sha256: String)] {
        await serving?.value ?? []
    }

    func stop() {
        serving?.cancel()
        listener.close()
    }
}

/// The consumer application: sends `count` random bytes to `port` and returns their digest.
func sendRandomBytes(to port: UInt16, host: String = "127.0.0.1", count: Int) async throws -> String {
    let socket = try await Socket.connect(to: SocketAddress.resolve(host: host, port: port), deadline: .now + .seconds(10))
    defer { socket.close() }
    let digest = Digest()
    var sent = 0
    let chunkSize = 1 << 20
    var chunk = [UInt8](repeating: 0, count: chunkSize)
    while sent < count {
        let size = min(chunkSize, count - sent)
        chunk.withUnsafeMutableBytes { _ = RAND_bytes($0.baseAddress, Int32($0.count)) }
        let piece = size == chunkSize ? chunk : Array(chunk.prefix(size))
        digest.update(piece)
        try await socket.writeAll(piece, deadline: .now + .seconds(60))
        sent += size
    }
    _ = shutdown(socket.fd, Int32(SHUT_WR))
    // Wait for the far end to close, so every byte has been delivered.
    while let rest = try? await socket.read(max: 4096, deadline: .now + .seconds(60)), !rest.isEmpty {}
    return digest.finish()
}
