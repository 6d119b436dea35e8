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
        var line = "\(Logger.timestamp()) \(level) \(label): \(Logger.oneLine(message()))"
        for key in merged.keys.sorted() {
            line += " \(key)=\(Logger.value(merged[key]!))"  // safe: key comes from merged.keys
        }
        sink.write(line, level: level)
    }

    /// The log's own guarantee, whatever a call site passes (a value may come from the wire, a
    /// token, a proxy's output): one line per call, and nothing a terminal or a log viewer would act
    /// on. Control characters (C0, DEL, C1), format characters (bidirectional overrides) and line or
    /// paragraph separators are written as `\u{XX}`; a line feed, carriage return or tab as `\n`,
    /// `\r`, `\t`.
    static func oneLine(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isUnsafeInLog) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where isUnsafeInLog(scalar): result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// A metadata value as logfmt writes it: `oneLine`, then quoted when it is empty or holds a
    /// space, `=` or `"` (`error="no route to host"`), with `"` and `\` escaped as `\"` and `\\`;
    /// as it is otherwise.
    static func value(_ text: String) -> String {
        let line = oneLine(text)
        // By scalar: a quote followed by a combining mark is still a quote.
        guard line.isEmpty || line.unicodeScalars.contains(where: { $0 == " " || $0 == "=" || $0 == "\"" }) else { return line }
        var quoted = "\""
        for scalar in line.unicodeScalars {
            if scalar == "\"" || scalar == "\\" { quoted.unicodeScalars.append("\\") }
            quoted.unicodeScalars.append(scalar)
        }
        return quoted + "\""
    }

    private static func isUnsafeInLog(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator: true
        default: false
        }
    }

    public func debug(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) { log(.debug, message(), metadata) }
    public func info(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) { log(.info, message(), metadata) }
    public func warning(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) { log(.warning, message(), metadata) }
    public func error(_ message: @autoclosure () -> String, _ metadata: [String: String] = [:]) { log(.error, message(), metadata) }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return timestamp(seconds: Int(now.tv_sec), milliseconds: Int(now.tv_nsec / 1_000_000))
    }

    /// `date` in RFC 3339, UTC, with milliseconds (`2026-12-06T02:03:21.839Z`): the one spelling of
    /// a time in s2cs's log lines and audit log.
    public static func timestamp(_ date: Date) -> String {
        let milliseconds = Int((date.timeIntervalSince1970 * 1000).rounded(.down))
        return timestamp(seconds: milliseconds / 1000, milliseconds: milliseconds % 1000)
    }

    private static func timestamp(seconds: Int, milliseconds: Int) -> String {
        var tm = tm()
        var time = time_t(seconds)
        gmtime_r(&time, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milliseconds)
    }
}

/// Where log lines go: standard error (flushed per line) or memory (for tests). When standard error
/// is systemd's journal, each line starts with its sd-daemon priority (`<3>` error, `<4>` warning,
/// `<6>` info, `<7>` debug), so that `journalctl -p warning` finds warnings and errors.
public final class LogSink: Sendable {
    private let lines: Mutex<[String]>
    /// Where lines are written; nil: kept in memory.
    private let fd: Int32?
    /// `fd` is a journal stream: lines carry their priority.
    public let journal: Bool

    private init(fd: Int32?, journal: Bool) {
        self.lines = Mutex([])
        self.fd = fd
        self.journal = journal
    }

    /// Lines to `fd`, with their priority when `journalStream` (systemd's `JOURNAL_STREAM`,
    /// `DEVICE:INODE`) names `fd` itself (a program whose stderr was redirected since keeps the
    /// variable but writes elsewhere).
    public convenience init(fileDescriptor fd: Int32, journalStream: String?) {
        self.init(fd: fd, journal: Self.isJournal(fd, journalStream: journalStream))
    }

    public static let standardError = LogSink(fileDescriptor: 2, journalStream: ProcessInfo.processInfo.environment["JOURNAL_STREAM"])
    public static func memory() -> LogSink { LogSink(fd: nil, journal: false) }

    /// Whether `journalStream` is `fd`'s device and inode, as fstat(2) gives them.
    static func isJournal(_ fd: Int32, journalStream: String?) -> Bool {
        let parts = journalStream?.split(separator: ":", omittingEmptySubsequences: false) ?? []
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return false }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    /// The sd-daemon prefix of a level (sd-daemon.h: SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG).
    static func priority(_ level: Logger.Level) -> String {
        switch level {
        case .error: "<3>"
        case .warning: "<4>"
        case .info: "<6>"
        case .debug: "<7>"
        }
    }

    public func write(_ line: String, level: Logger.Level = .info) {
        guard let fd else {
            lines.withLock { $0.append(line) }
            return
        }
        let bytes = Array(((journal ? Self.priority(level) : "") + line + "\n").utf8)
        lines.withLock { _ in  // the lock keeps lines from interleaving
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { return }  // nowhere to report it: the line is lost
                offset += written
            }
        }
    }

    /// The lines written so far (memory sinks only).
    public var recorded: [String] { lines.withLock { $0 } }
}
