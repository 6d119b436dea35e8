import Foundation
import SciStreamSystem
import SciStreamTLS

/// A certificate and its key on disk.
struct CertificatePair: Sendable {
    let certificate: String
    let key: String
}

struct FixtureError: Error, Sendable, CustomStringConvertible {
    let description: String
}

/// Certificates made once per test process with the repository's own certs/make-dev-cert.sh,
/// in a temporary folder removed at exit.
struct Certificates: Sendable {
    /// For 127.0.0.1, localhost and ::1 (the script's defaults).
    let loopback: CertificatePair
    /// For 10.9.9.9 only.
    let otherAddress: CertificatePair
    /// For the loopback names again, with another key: a stranger to clients trusting `loopback`.
    let stranger: CertificatePair
    /// The temporary folder holding them, for tests that write their own files.
    let folder: String

    static func get() throws -> Certificates { try shared.get() }

    private static let shared: Result<Certificates, FixtureError> = Result { () throws(FixtureError) in try make() }

    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private static let folderPath: String = {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("scistream-tls-tests-\(getpid())-\(UUID().uuidString.prefix(8))").path
        atexit { try? FileManager.default.removeItem(atPath: Certificates.folderPath) }
        return path
    }()

    private static func make() throws(FixtureError) -> Certificates {
        let folder = folderPath
        func pair(_ name: String, _ names: [String]) throws(FixtureError) -> CertificatePair {
            let directory = folder + "/" + name
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw FixtureError(description: "cannot make \(directory): \(error)")
            }
            try runScript(["-o", directory] + names)
            return CertificatePair(certificate: directory + "/server.crt", key: directory + "/server.key")
        }
        return Certificates(
            loopback: try pair("loopback", []),
            otherAddress: try pair("other", ["10.9.9.9"]),
            stranger: try pair("stranger", ["127.0.0.1", "localhost", "::1"]),
            folder: folder)
    }

    /// Runs certs/make-dev-cert.sh with `arguments`; its output is collected and shown on failure.
    static func runScript(_ arguments: [String]) throws(FixtureError) {
        let script = repositoryRoot.appendingPathComponent("certs/make-dev-cert.sh").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        do {
            try process.run()
        } catch {
            throw FixtureError(description: "cannot run \(script): \(error)")
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw FixtureError(description: "\(script) \(arguments) failed (\(process.terminationStatus)): \(text)")
        }
    }
}

/// A deadline `seconds` from now.
func soon(_ seconds: Double = 10) -> ContinuousClock.Instant {
    .now + .milliseconds(Int(seconds * 1000))
}

/// A listener on 127.0.0.1 (or `host`) with a port the system picked, and that port.
func makeListener(host: String = "127.0.0.1") throws -> (Socket, UInt16) {
    let listener = try Socket.listen(on: SocketAddress.resolve(host: host, port: 0))
    guard let port = listener.localAddress?.port, port != 0 else {
        throw FixtureError(description: "the listener has no port")
    }
    return (listener, port)
}

/// A plain TCP connection to `host:port`.
func connectPlain(port: UInt16, host: String = "127.0.0.1") async throws -> Socket {
    try await Socket.connect(to: SocketAddress.resolve(host: host, port: port), deadline: soon())
}

/// Reads from `stream` until `count` bytes have come, or end of file.
func readExactly(_ count: Int, from stream: any ByteStream) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    while bytes.count < count {
        let more = try await stream.read(max: count - bytes.count, deadline: soon())
        if more.isEmpty { break }
        bytes += more
    }
    return bytes
}
