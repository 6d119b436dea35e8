import Foundation
import SciStreamWire
import SciStreamSystem
import SciStreamPolicy

/// One page of the metrics listener: its status line and body.
package struct MetricsPage: Sendable {
    var status: String
    var contentType: String
    var body: String

    package static let prometheusType = "text/plain; version=0.0.4; charset=utf-8"

    package init(status: String = "200 OK", contentType: String = "text/plain; charset=utf-8", body: String) {
        (self.status, self.contentType, self.body) = (status, contentType, body)
    }
}

/// The metrics listener cannot be opened.
package struct MetricsListenError: Error, CustomStringConvertible {
    let endpoint: Endpoint
    let reason: String

    package var description: String {
        "cannot listen on --metrics \(endpoint): \(reason) (is another s2cs or exporter there? choose another --metrics address)"
    }
}

/// `s2cs --metrics HOST:PORT`: a minimal HTTP/1.1 server on the project's own sockets and reactor
/// that answers `GET /metrics` with the Prometheus text format, and `/healthz` and `/readyz` for
/// probes, one request per connection. Anything else gets a short error page; a slow or oversized
/// request is cut off.
///
/// Idle connections cannot keep a scraper out: when all `maxConnections` slots are taken, a
/// newcomer takes the slot of the oldest connection that has not sent its whole request head (the
/// `ConnectionTable` rule, every address a stranger), and a request head must be complete within
/// `requestTimeout` (5 s: a third of a 15 s scrape interval, and a scraper sends its request at
/// once; 2 s was tried and cut off the test suite's own scrapes on a loaded machine).
package final class MetricsServer: Sendable {
    static let paths = ["/metrics", "/healthz", "/readyz"]

    static let maxRequestBytes = 8192
    static let requestTimeout: Duration = .seconds(5)
    static let maxConnections = 64
    /// How long the page may take to make and send, once the request is in.
    static let answerTimeout: Duration = .seconds(10)

    private let listener: Socket
    private let page: @Sendable (String) async -> MetricsPage
    private let logger: Logger
    private let connections = ConnectionTable(maxConnections: MetricsServer.maxConnections, maxPerClient: .max, dropsOwnAddress: true)

    /// `page` answers each of `paths`.
    package init(endpoint: Endpoint, logger: Logger, page: @escaping @Sendable (String) async -> MetricsPage) throws(MetricsListenError) {
        do {
            listener = try Socket.listen(on: SocketAddress.resolve(host: endpoint.host, port: endpoint.port), backlog: 256)
        } catch {
            throw MetricsListenError(endpoint: endpoint, reason: "\(error)")
        }
        self.page = page
        self.logger = logger
    }

    package var boundAddress: SocketAddress? { listener.localAddress }

    /// Serves until the task is cancelled.
    package func run() async {
        await withDiscardingTaskGroup { group in
            while !Task.isCancelled {
                guard let socket = try? await listener.accept() else {
                    if Task.isCancelled { break }
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                }
                guard case .admitted(let id, let dropped) = connections.admit(socket, client: socket.peerAddress?.host ?? "unknown") else {
                    socket.close()
                    continue
                }
                if let dropped { logger.debug("metrics: idle connection dropped to make room", ["client": dropped]) }
                group.addTask {
                    await self.serve(socket, id: id)
                    socket.close()
                    self.connections.remove(id)
                }
            }
        }
    }

    private func serve(_ socket: Socket, id: UInt64) async {
        let deadline = ContinuousClock.now + Self.requestTimeout
        var received: [UInt8] = []
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while received.count <= Self.maxRequestBytes {
            if let head = Self.head(received, end: end) {
                connections.proven(id)
                await answer(head, socket, deadline: .now + Self.answerTimeout)
                return
            }
            guard let bytes = try? await socket.read(max: 4096, deadline: deadline), !bytes.isEmpty else { return }
            received += bytes
        }
        await send(socket, status: "431 Request Header Fields Too Large", body: "request head over \(Self.maxRequestBytes) bytes\n", deadline: deadline)
    }

    /// The request head (up to the blank line), once it is all there.
    static func head(_ bytes: [UInt8], end: [UInt8]) -> String? {
        guard bytes.count >= end.count else { return nil }
        for start in 0...(bytes.count - end.count) where bytes[start..<(start + end.count)].elementsEqual(end) {
            return String(decoding: bytes[..<start], as: UTF8.self)
        }
        return nil
    }

    private func answer(_ head: String, _ socket: Socket, deadline: ContinuousClock.Instant) async {
        let requestLine = head.split(separator: "\r\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            await send(socket, status: "400 Bad Request", body: "not an HTTP/1.x request line\n", deadline: deadline)
            return
        }
        let method = parts[0], target = parts[1]
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard Self.paths.contains(String(path)) else {
            await send(socket, status: "404 Not Found", body: "no such page: the metrics are at /metrics, the probes at /healthz and /readyz\n", deadline: deadline)
            return
        }
        guard method == "GET" || method == "HEAD" else {
            await send(socket, status: "405 Method Not Allowed", extra: "Allow: GET, HEAD\r\n", body: "use GET\n", deadline: deadline)
            return
        }
        let answer = await page(String(path))
        await send(socket, status: answer.status, contentType: answer.contentType, body: answer.body,
                   withBody: method == "GET", deadline: deadline)
    }

    private func send(_ socket: Socket, status: String, contentType: String = "text/plain; charset=utf-8", extra: String = "",
                      body: String, withBody: Bool = true, deadline: ContinuousClock.Instant) async {
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\n\(extra)Connection: close\r\n\r\n"
        var bytes = Array(head.utf8)
        if withBody { bytes += body.utf8 }  // one copy of a page that may hold 1,000 sessions' series
        do {
            try await socket.writeAll(bytes, deadline: deadline)
        } catch {
            logger.debug("metrics: could not answer", ["error": "\(error)"])
        }
    }
}
