import Foundation
import Synchronization

/// A small structured logger in the manner of swift-log: short fixed messages, data in metadata.
/// Made once in `main` and passed down.
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable, CustomStringConvertible {
        case debug = 0, info, warning, error
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        public var description: String {
            switch self {
            case .debug: "debug"
            case .info: "info"
            case .warning: "warning"
            case .error: "error"
            }
        }
    }

    public let label: String
    public var level: Level
    public var metadata: [String: String]
    private let sink: LogSink

    public init(label: String, level: Level = .info, sink: LogSink = .standardError) {
        self.label = label
        self.level = level
        self.metadata = [:]
        self.sink = sink
    }

    /// A copy of this logger carrying one more metadata entry.
    public func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy.metadata[key] = value
        return copy
    }

    public func log(_ level: Level, _ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) {
        guard level >= self.level else { return }
        let merged = self.metadata.merging(metadata) { _, new in new }
        var line = "\(Logger.timestamp()) \(level) \(label): \(message())"
        for key in merged.keys.sorted() {
            line += " \(key)=\(merged[key]!)"  // safe: key comes from merged.keys
        }
        sink.write(line)
    }

    public func debug(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) { log(.debug, message(), metadata) }
    public func info(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) { log(.info, message(), metadata) }
    public func warning(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) { log(.warning, message(), metadata) }
    public func error(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) { log(.error, message(), metadata) }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var tm = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      Int(now.tv_nsec / 1_000_000))
    }
}

/// Where log lines go: standard error (flushed per line) or memory (for tests).
public final class LogSink: Sendable {
    private let lines: Mutex<[String]>
    private let toStandardError: Bool

    private init(toStandardError: Bool) {
        self.lines = Mutex([])
        self.toStandardError = toStandardError
    }

    public static let standardError = LogSink(toStandardError: true)
    public static func memory() -> LogSink { LogSink(toStandardError: false) }

    public func write(_ line: String) {
        if toStandardError {
            lines.withLock { _ in  // the lock keeps lines from interleaving
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        } else {
            lines.withLock { $0.append(line) }
        }
    }

    /// The lines written so far (memory sinks only).
    public var recorded: [String] { lines.withLock { $0 } }
}
