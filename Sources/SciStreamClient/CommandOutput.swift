import Foundation
import Synchronization
import SciStreamCommandLine

/// A JSON value, written with its object keys in the order they were set (docs/json.md).
public enum JSONValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
    case array([JSONValue])
    case object([(String, JSONValue)])
    case null

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        lhs.encoded == rhs.encoded
    }

    public static func strings(_ values: [String]) -> JSONValue { .array(values.map(JSONValue.string)) }

    /// Compact JSON text on one line: strings escaped per RFC 8259 (every control character as `\u00XX`
    /// or its short form), so that server text can never break the line or the terminal.
    public var encoded: String {
        var text = ""
        append(to: &text)
        return text
    }

    private func append(to text: inout String) {
        switch self {
        case .string(let value): Self.appendString(value, to: &text)
        case .int(let value): text += String(value)
        case .bool(let value): text += value ? "true" : "false"
        case .null: text += "null"
        case .array(let values):
            text += "["
            for (index, value) in values.enumerated() {
                if index > 0 { text += "," }
                value.append(to: &text)
            }
            text += "]"
        case .object(let pairs):
            text += "{"
            for (index, (key, value)) in pairs.enumerated() {
                if index > 0 { text += "," }
                Self.appendString(key, to: &text)
                text += ":"
                value.append(to: &text)
            }
            text += "}"
        }
    }

    private static func appendString(_ value: String, to text: inout String) {
        text += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                        || scalar.value == 0x2028 || scalar.value == 0x2029:
                text += String(format: "\\u%04x", scalar.value)
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}

/// Where a command's results go: the human lines on stdout, or, with `--json`, one JSON object on
/// stdout when the command ends (docs/json.md). Errors and warnings go to stderr either way.
public final class CommandOutput: Sendable {
    /// The output of the command running in this task (a plain, human one unless `--json` was given).
    @TaskLocal public static var current = CommandOutput(command: nil, json: false)

    public let json: Bool
    private let fields: Mutex<[(String, JSONValue)]>

    public init(command: String?, json: Bool) {
        self.json = json
        fields = Mutex([("command", command.map(JSONValue.string) ?? .null)])
    }

    /// A human result line: on stdout, or nothing with `--json` (the JSON object carries the facts).
    public func line(_ text: String) {
        if !json { Console.out(text) }
    }

    /// Text a person must see even with `--json` (a login URL, a prompt): stdout, or stderr with `--json`.
    public func prompt(_ text: String, newline: Bool = true) {
        let data = Data((newline ? text + "\n" : text).utf8)
        (json ? FileHandle.standardError : FileHandle.standardOutput).write(data)
    }

    /// Sets a field of the JSON object (replacing an earlier value of the same key, keeping its place).
    public func set(_ key: String, _ value: JSONValue) {
        fields.withLock { fields in
            if let index = fields.firstIndex(where: { $0.0 == key }) {
                fields[index].1 = value
            } else {
                fields.append((key, value))
            }
        }
    }

    public func set(_ key: String, _ value: String) { set(key, .string(value)) }

    /// The fields set so far, without `command`: one side's part of a two-sided command.
    public var details: JSONValue {
        .object(fields.withLock { $0 }.filter { $0.0 != "command" })
    }

    /// The JSON object, with `ok`, `status` and (on failure) `error` last.
    public func object(error: (code: String, message: String, step: String?)?) -> JSONValue {
        var pairs = fields.withLock { $0 }
        pairs.append(("ok", .bool(error == nil)))
        pairs.append(("status", .string(error?.code ?? "OK")))
        if let error {
            pairs.append(("error", Self.errorObject(error)))
        }
        return .object(pairs)
    }

    /// `{"code": ..., "message": ..., "step": ...}` (`step` only when known).
    public static func errorObject(_ error: (code: String, message: String, step: String?)) -> JSONValue {
        var details: [(String, JSONValue)] = [("code", .string(error.code)), ("message", .string(error.message))]
        if let step = error.step { details.append(("step", .string(step))) }
        return .object(details)
    }

    /// Prints the JSON object on stdout (with `--json`; nothing otherwise).
    public func finish(error: (code: String, message: String, step: String?)? = nil) {
        guard json else { return }
        Console.out(object(error: error).encoded)
    }

    /// Whether `--json` (or `--json=<true>`) is among the arguments, before any `--`. Looked at before
    /// parsing, so that a usage error is reported as JSON too.
    static func wantsJSON(_ arguments: [String]) -> Bool {
        for argument in arguments {
            if argument == "--" { return false }
            let normalized = ArgumentParser.normalize(argument)
            if normalized == "json" { return true }
            if normalized.hasPrefix("json="), (try? ArgumentParser.parseBool(String(normalized.dropFirst(5)), option: "--json")) == true {
                return true
            }
        }
        return false
    }
}
