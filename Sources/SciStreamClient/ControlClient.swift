import Foundation
import SciStreamWire
import SciStreamSystem
import SciStreamTLS
import SciStreamCommandLine

/// A failure talking to an s2cs, worded for the person at the shell.
public struct ClientError: Error, CustomStringConvertible {
    public let description: String
    public let status: Status?
    /// The request that failed (`request`, `hello`, `update`, `release`, `list`), when the s2cs answered.
    public let step: String?
    init(_ description: String, status: Status? = nil, step: String? = nil) {
        self.description = description
        self.status = status
        self.step = step
    }
}

/// How s2uc reaches an s2cs: its address, and TLS (with the trust anchor) or plaintext.
public struct ControlTarget: Sendable {
    public let host: String
    public let port: UInt16
    public let tls: TLSContext?
    /// `--s2cs unix:PATH`: an s2cs's local admin socket (plaintext; the file's mode is the access control).
    public var unixPath: String? = nil
    public var display: String { unixPath.map { "unix:\($0)" } ?? Endpoint(host: host, port: port).description }

    public init(host: String, port: UInt16, tls: TLSContext?) {
        self.host = host
        self.port = port
        self.tls = tls
    }

    public init(unixPath: String) {
        self.init(host: "localhost", port: 0, tls: nil)
        self.unixPath = unixPath
    }
}

/// One control connection: send a request frame, read its reply frame.
public final class ControlConnection {
    private let stream: any ByteStream
    private var decoder = FrameDecoder()
    private let target: ControlTarget
    static let connectTimeout: Duration = .seconds(10)

    private init(stream: any ByteStream, target: ControlTarget) {
        self.stream = stream
        self.target = target
    }

    deinit { stream.close() }

    /// The s2cs this connection reaches, as messages name it.
    var targetDisplay: String { target.display }

    public static func open(_ target: ControlTarget) async throws(ClientError) -> ControlConnection {
        if let path = target.unixPath {
            do {
                return ControlConnection(stream: try Socket.connectUnix(path: path), target: target)
            } catch {
                let hint = error == .connectionRefused || error.rawValue == ENOENT ? "is s2cs running with this --admin-socket?"
                    : error.rawValue == EACCES ? "only s2cs's own user (and root) may use its admin socket" : "check the path"
                throw ClientError("cannot connect to the s2cs admin socket \(path): \(error); \(hint)")
            }
        }
        let deadline = ContinuousClock.now + connectTimeout
        let address: SocketAddress
        do {
            address = try SocketAddress.resolve(host: target.host, port: target.port)
        } catch {
            throw ClientError("cannot connect to s2cs at \(target.display): \(error); check --s2cs")
        }
        let socket: Socket
        do {
            socket = try await Socket.connect(to: address, deadline: deadline)
        } catch let error as Errno {
            let hint = error == .timedOut
                ? "no answer within \(connectTimeout); check the address and any firewall"
                : "\(error); is s2cs running there? (check with 'ss -tlpn | grep \(target.port)' on that host)"
            throw ClientError("cannot connect to s2cs at \(target.display): \(hint)")
        } catch {
            throw ClientError("cannot connect to s2cs at \(target.display): \(error)")
        }
        guard let tls = target.tls else {
            return ControlConnection(stream: socket, target: target)
        }
        do {
            let stream = try await TLSStream.connect(socket: socket, context: tls, serverName: target.host, deadline: deadline)
            return ControlConnection(stream: stream, target: target)
        } catch {
            switch error.kind {
            case .peerIsPlaintext, .closed, .handshakeFailed:
                throw ClientError("s2cs at \(target.display) did not answer the TLS handshake (\(ErrorWording.tls(error))); if it runs with --ssl=False, pass --ssl False to s2uc")
            case .verificationFailed:
                throw ClientError("TLS verification of s2cs at \(target.display) failed: \(ErrorWording.tls(error)). Pass that s2cs's certificate with --server_cert; it must name \(target.host)")
            default:
                throw ClientError("TLS with s2cs at \(target.display) failed: \(ErrorWording.tls(error))")
            }
        }
    }

    /// Sends one request and waits for its reply (no deadline: a request waits for its hello).
    public func call(_ message: Message, timeout: Duration? = nil) async throws(ClientError) -> Message {
        do {
            try await stream.writeAll(message.encoded(), deadline: nil)
        } catch {
            throw ClientError("lost the connection to s2cs at \(target.display) while sending: \(ErrorWording.text(error))")
        }
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            do {
                if let reply = try decoder.nextMessage() {
                    if case .error(let status) = reply {
                        throw ClientError("s2cs at \(target.display) refused the request: \(escapedForTerminal(status.message))", status: status)
                    }
                    return reply
                }
            } catch let error as WireError {
                throw ClientError("s2cs at \(target.display) sent a malformed reply (\(ErrorWording.wire(error))); is that port an s2cs of this version?")
            } catch let error as ClientError {
                throw error
            } catch {
                throw ClientError(ErrorWording.text(error))
            }
            let bytes: [UInt8]
            do {
                bytes = try await stream.read(max: 65536, deadline: deadline)
            } catch where error.kind == .timedOut {
                throw ClientError("s2cs at \(target.display) did not answer in time")
            } catch {
                throw ClientError("lost the connection to s2cs at \(target.display): \(ErrorWording.text(error))")
            }
            if bytes.isEmpty {
                throw ClientError("s2cs at \(target.display) closed the connection without answering")
            }
            decoder.append(bytes)
        }
    }
}

/// One typed method per request: the reply of the request's own kind, or a `ClientError` (also
/// for a reply of another kind: that peer is not an s2cs of this version).
extension ControlConnection {
    /// `req`: waits (without deadline unless given) until the session's hello has arrived.
    public func request(_ request: Request, timeout: Duration? = nil) async throws(ClientError) -> RequestReply {
        let reply = try await call(.request(request), timeout: timeout)
        guard case .requestReply(let value) = reply else { throw unexpected(reply) }
        return value
    }

    public func hello(_ hello: Hello, timeout: Duration? = .seconds(30)) async throws(ClientError) -> Status {
        let reply = try await call(.hello(hello), timeout: timeout)
        guard case .helloReply(let value) = reply else { throw unexpected(reply) }
        return value
    }

    public func update(_ update: Update, timeout: Duration? = .seconds(60)) async throws(ClientError) -> UpdateReply {
        let reply = try await call(.update(update), timeout: timeout)
        guard case .updateReply(let value) = reply else { throw unexpected(reply) }
        return value
    }

    public func release(_ release: Release, timeout: Duration? = .seconds(60)) async throws(ClientError) -> Status {
        let reply = try await call(.release(release), timeout: timeout)
        guard case .releaseReply(let value) = reply else { throw unexpected(reply) }
        return value
    }

    public func list(_ list: ListSessions, timeout: Duration? = .seconds(30)) async throws(ClientError) -> ListReply {
        let reply = try await call(.list(list), timeout: timeout)
        guard case .listReply(let value) = reply else { throw unexpected(reply) }
        return value
    }

    private func unexpected(_ message: Message) -> ClientError {
        ClientError("s2cs at \(targetDisplay) answered with an unexpected message (kind 0x\(String(message.kind, radix: 16))); is it an s2cs of this version?")
    }
}
