import Testing
import Glibc
import Foundation
@testable import SciStreamSystem

/// The log's lines are logfmt: `key=value`, the value quoted when it must be.
@Suite struct LoggerTests {
    static func line(_ metadata: [String: String]) -> String {
        let sink = LogSink.memory()
        Logger(label: "test", sink: sink).info("event", metadata)
        return sink.recorded.first ?? ""
    }

    @Test func aPlainValueIsWrittenAsItIs() {
        #expect(Self.line(["session": "3ec4dddf", "pid": "42", "path": "/a/b\\c"]).hasSuffix(" info test: event path=/a/b\\c pid=42 session=3ec4dddf"))
    }

    @Test func aValueWithASpaceAnEqualsSignOrAQuoteOrNothingIsQuoted() {
        #expect(Self.line(["error": "no route to host"]).hasSuffix(" error=\"no route to host\""))
        #expect(Self.line(["rule": "a=b"]).hasSuffix(" rule=\"a=b\""))
        #expect(Self.line(["name": "say \"hi\""]).hasSuffix(#" name="say \"hi\"""#))
        #expect(Self.line(["empty": ""]).hasSuffix(" empty=\"\""))
        // A backslash inside a quoted value is escaped, after the one-line escaping.
        #expect(Self.line(["text": "a\\b c\nd"]).hasSuffix(#" text="a\\b c\\nd""#))
        #expect(Self.line(["quote": "\"\u{301}x"]).hasSuffix(" quote=\"\\\"\u{301}x\""))
    }

    @Test func timesAreRFC3339InUTCWithMilliseconds() {
        #expect(Logger.timestamp(Date(timeIntervalSince1970: 1_733_450_601.839)) == "2024-12-06T02:03:21.839Z")
        #expect(Logger.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(Self.line([:]).prefix(24).allSatisfy { $0.isNumber || "-T:.Z".contains($0) }, "\(Self.line([:]))")
    }

    @Test func aLineStaysOneLine() {
        let line = Self.line(["forged": "x\nyyyy-mm-dd error fake: line", "other": "\u{1B}[2J"])
        #expect(!line.contains("\n") && !line.contains("\u{1B}"))
        #expect(line.hasSuffix(#" forged="x\\nyyyy-mm-dd error fake: line" other=\u{1B}[2J"#))
    }
}

/// With standard error on systemd's journal (`JOURNAL_STREAM` names it), lines carry their priority.
@Suite struct JournalPriorityTests {
    /// What a sink on a pipe writes for one line of each level, when told `journalStream`
    /// (`nil`: the pipe's own device and inode).
    static func written(journalStream: ((UInt64, UInt64)) -> String?) throws -> [String] {
        var ends: [Int32] = [0, 0]
        try #require(pipe(&ends) == 0)
        defer { close(ends[0]) }
        var info = stat()
        try #require(fstat(ends[1], &info) == 0)
        let sink = LogSink(fileDescriptor: ends[1], journalStream: journalStream((UInt64(info.st_dev), UInt64(info.st_ino))))
        let logger = Logger(label: "test", level: .debug, sink: sink)
        logger.debug("d")
        logger.info("i")
        logger.warning("w")
        logger.error("e")
        close(ends[1])
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(ends[0], &buffer, buffer.count)
            guard count > 0 else { break }
            bytes += buffer.prefix(count)
        }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    @Test func onTheJournalEachLineStartsWithItsPriority() throws {
        let lines = try Self.written { "\($0.0):\($0.1)" }
        #expect(lines.map { String($0.prefix(3)) } == ["<7>", "<6>", "<4>", "<3>"], "\(lines)")
        #expect(lines[3].hasSuffix(" error test: e"), "\(lines)")
    }

    @Test func elsewhereNoLineHasAPrefix() throws {
        for stream: ((UInt64, UInt64)) -> String? in [{ _ in nil }, { "\($0.0):\($0.1 + 1)" }, { "\($0.0 + 1):\($0.1)" }, { "\($0.0)-\($0.1)" }, { _ in "" }] {
            let lines = try Self.written(journalStream: stream)
            #expect(lines.count == 4 && lines.allSatisfy { $0.first?.isNumber == true }, "\(lines)")
        }
    }
}
