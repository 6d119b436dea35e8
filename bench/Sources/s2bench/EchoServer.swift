import Foundation
import SciStreamCommandLine
import SciStreamSystem

/// `s2bench echo`: the producer application of the data-plane setup-latency benchmark. Listens on
/// `host:port` (port 0 picks a free port), prints `echo listening on <address>` once it accepts, and
/// sends back every byte it receives, on any number of connections, until it is stopped (SIGTERM).
enum EchoServer {
    static let options: [OptionSpec] = [
        OptionSpec("host", value: "ip", default: "127.0.0.1", help: "Address to listen on."),
        OptionSpec("port", value: "port", default: "0", help: "Port to listen on (0 picks a free one and prints it)."),
    ]
    static let usage = "s2bench echo [--host <ip>] [--port <port>]"

    static func run(_ parsed: ParsedArguments) async throws -> Int32 {
        let host = parsed.value(named: "host") ?? "127.0.0.1"
        let port = try ArgumentParser.parseInt(parsed.value(named: "port") ?? "0", option: "port", range: 0...65535)
        let address: SocketAddress
        do { address = try SocketAddress.resolve(host: host, port: UInt16(port)) } catch {
            throw UsageError("bad --host '\(host)': \(error)")
        }
        let listener: Socket
        do { listener = try Socket.listen(on: address) } catch {
            throw BenchError("cannot listen on \(address): \(error)")
        }
        Console.out("echo listening on \(listener.localAddress?.description ?? address.description)")
        await withDiscardingTaskGroup { group in
            while true {
                let connection: Socket
                do {
                    connection = try await listener.accept()
                } catch {
                    // Out of descriptors or the like: back off, keep serving.
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                }
                group.addTask { await echo(connection) }
            }
        }
        return ExitCode.success  // not reached: it serves until stopped
    }

    static func echo(_ connection: Socket) async {
        defer { connection.close() }
        while true {
            guard let bytes = try? await connection.read(max: 65536), !bytes.isEmpty else { return }
            do { try await connection.writeAll(bytes) } catch { return }
        }
    }
}
