import Testing
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

    @Test func aLineStaysOneLine() {
        let line = Self.line(["forged": "x\nyyyy-mm-dd error fake: line", "other": "\u{1B}[2J"])
        #expect(!line.contains("\n") && !line.contains("\u{1B}"))
        #expect(line.hasSuffix(#" forged="x\\nyyyy-mm-dd error fake: line" other=\u{1B}[2J"#))
    }
}
