import Foundation
import Glibc
import SciStreamCommandLine

/// `s2bench timewait`: keeps about N loopback TCP sockets in TIME_WAIT, as a busy gateway has them.
///
/// It listens on 16 loopback ports and connects to them in a loop; the accepting side closes first,
/// so each connection leaves one TIME_WAIT socket on the listening side (and none holding a client
/// port). A connection that lands on a 4-tuple already in TIME_WAIT adds none, so it counts the
/// machine's TIME_WAIT sockets (`tw` in /proc/net/sockstat) rather than its connections: it fills
/// until there are N, prints `timewait filled <n> in <s> s`, then tops up ten times a second to
/// keep N (TIME_WAIT lasts 60 s on Linux) until it is stopped.
enum TimeWaitLoad {
    static let options: [OptionSpec] = [
        OptionSpec("count", value: "n", default: "40000", help: "TIME_WAIT sockets to keep."),
        OptionSpec("threads", value: "n", default: "4", help: "Connecting threads."),
    ]
    static let usage = "s2bench timewait [--count <n>] [--threads <n>]"

    static func run(_ parsed: ParsedArguments) async throws -> Int32 {
        let count = try ArgumentParser.parseInt(parsed.value(named: "count") ?? "40000", option: "count", range: 1...120_000)
        let threads = try ArgumentParser.parseInt(parsed.value(named: "threads") ?? "4", option: "threads", range: 1...64)
        var listening: [UInt16] = []
        for _ in 0..<16 {
            let (fd, port) = try listenLoopback()
            listening.append(port)
            Thread.detachNewThread { acceptAndClose(fd) }
        }
        let ports = listening
        let started = ContinuousClock.now
        let connector = Connector(ports: ports)
        var filled = false
        while true {
            let slice = ContinuousClock.now
            let missing = count - timeWaitSockets()
            if missing > 0 {
                await connector.connect(missing, threads: filled ? 1 : threads)
            } else if !filled {
                filled = true
                let seconds = (ContinuousClock.now - started) / .seconds(1)
                Console.out("timewait filled \(count - missing) in \(String(format: "%.1f", seconds)) s")
            }
            if filled || missing <= 0 { try? await Task.sleep(until: slice + .milliseconds(100)) }
            if !filled, ContinuousClock.now - started > .seconds(50) {
                throw BenchError("only \(timeWaitSockets()) TIME_WAIT sockets after 50 s (asked for \(count)); see net.ipv4.tcp_max_tw_buckets")
            }
        }
    }

    /// The machine's TCP sockets in TIME_WAIT, from /proc/net/sockstat (`TCP: inuse .. tw N ..`).
    static func timeWaitSockets() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/net/sockstat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("TCP:") }) else { return 0 }
        let words = line.split(separator: " ")
        guard let index = words.firstIndex(of: "tw"), index + 1 < words.count else { return 0 }
        return Int(words[index + 1]) ?? 0
    }

    /// Makes connections on threads of its own (blocking calls, off the cooperative pool).
    final class Connector: Sendable {
        let ports: [UInt16]
        init(ports: [UInt16]) { self.ports = ports }

        func connect(_ n: Int, threads: Int) async {
            let done = DispatchGroup()
            let share = (n + threads - 1) / threads
            let ports = self.ports
            for index in 0..<threads {
                done.enter()
                Thread.detachNewThread {
                    let offset = Int.random(in: 0..<ports.count)
                    for k in 0..<share { TimeWaitLoad.oneConnection(port: ports[(offset + index + k) % ports.count]) }
                    done.leave()
                }
            }
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                done.notify(queue: .global()) { continuation.resume() }
            }
        }
    }

    private static func listenLoopback() throws -> (Int32, UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("socket: \(String(cString: strerror(errno)))") }
        var address = loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 4096) == 0 else { throw BenchError("bind/listen on 127.0.0.1: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        return address
    }

    /// The accepting side closes first: the TIME_WAIT socket is its own.
    private static func acceptAndClose(_ listener: Int32) {
        while true {
            let fd = accept(listener, nil, nil)
            if fd >= 0 { close(fd) } else if errno != EINTR { usleep(1000) }
        }
    }

    /// Connects, waits for the other side's close, closes.
    static func oneConnection(port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { usleep(1000); return }
        defer { close(fd) }
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return }
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) < 0 && errno == EINTR {}
    }
}
