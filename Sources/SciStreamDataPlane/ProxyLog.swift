#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem

/// Reading a proxy's own error text back from the session log, for startup failures.
enum ProxyLog {
    /// The size of the log now: where this run's output starts.
    static func size(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    /// The error lines of one run of `type` in `text`, without timestamps and pids, deduplicated,
    /// joined with "; ". Falls back to the last lines when the proxy used no recognizable marker.
    static func errorSummary(_ text: String, type: DataServerType, limit: Int = 700) -> String {
        let lines = text.split(separator: "\n").map { String($0).trimmingTrailingSpaces() }.filter { !$0.isEmpty }
        var picked: [String] = []
        for line in lines {
            if let message = errorMessage(line, type: type), !picked.contains(message) {
                picked.append(message)
            }
        }
        if picked.isEmpty {
            picked = Array(lines.suffix(3))
        }
        var summary = picked.suffix(6).joined(separator: "; ")
        if summary.count > limit { summary = String(summary.prefix(limit)) + "..." }
        return summary
    }

    /// The message of an error line, or nil if `line` is not one.
    static func errorMessage(_ line: String, type: DataServerType) -> String? {
        switch type {
        case .haproxy:
            // "[ALERT]    (6098) : Binding [x.conf:12] for proxy l0: cannot bind socket (Address already in use) for [127.0.0.1:41100]"
            guard line.hasPrefix("[ALERT]") else { return nil }
            if line.contains("Current worker") && line.contains("exited with code") { return nil }  // shutdown noise
            return "[ALERT] " + afterMarker(line, " : ")
        case .nginx:
            // "nginx: [emerg] bind() to ... failed (98: Address already in use)" on stderr, or
            // "2026/11/22 00:20:57 [emerg] 6546#6546: bind() to ... failed" in error_log.
            for level in ["[emerg]", "[alert]", "[crit]"] {
                guard let range = line.range(of: level) else { continue }
                var rest = line[range.upperBound...].drop { $0 == " " }
                if let colon = rest.range(of: ": "), rest[..<colon.lowerBound].contains("#") {
                    rest = rest[colon.upperBound...]  // the "pid#tid: " prefix
                }
                if rest.hasPrefix("*"), let space = rest.firstIndex(of: " ") {
                    rest = rest[rest.index(after: space)...]  // the "*8 " connection number
                }
                if rest.hasPrefix("SSL_shutdown()") { return nil }  // noise on every refused client
                return "\(level) \(rest)"
            }
            return nil
        case .stunnel:
            // Before the config is read: "[!] Binding service [l0] failed", "[.] Binding service
            // [l0] to 127.0.0.1:5100: Address already in use (98)". After: "... LOG3[ui]: ...".
            if line.hasPrefix("[!] ") { return String(line.dropFirst(4)) }
            if line.hasPrefix("[.] ") && (line.contains("already in use") || line.contains("rror")) {
                return String(line.dropFirst(4))
            }
            for level in ["LOG3[", "LOG2[", "LOG1[", "LOG0["] where line.contains(level) {
                return afterMarker(line, "]: ")
            }
            return nil
        case .mock:
            return nil
        }
    }

    private static func afterMarker(_ line: String, _ marker: String) -> String {
        guard let range = line.range(of: marker) else { return line }
        return String(line[range.upperBound...])
    }
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var result = Substring(self)
        while let last = result.last, last == " " || last == "\r" || last == "\t" { result = result.dropLast() }
        return String(result)
    }
}
