/// Command-line parsing in the manner of swift-argument-parser, small enough to own:
/// every option has one canonical name; `--x_y` and `--x-y`, `--flag=value` and `--flag value`
/// are all accepted; input is validated before anything runs.

/// A usage error: printed as `Error: <message>`, then the usage line, exit 64.
public struct UsageError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One option a command accepts.
public struct OptionSpec: Sendable {
    /// The canonical key: the name without leading dashes, words joined by `_` (e.g. `receiver_ports`).
    public let name: String
    /// The spelling shown in help, as the seeds write it (`listener-ip`, `receiver_ports`).
    public let spelling: String
    /// Extra spellings without dashes (e.g. `v` for `-v`).
    public let aliases: [String]
    /// Whether the option takes a value (`--port 5000`); otherwise it is a flag (`--verbose`).
    public let takesValue: Bool
    public let valueName: String
    public let help: String
    public let defaultValue: String?

    public init(_ spelling: String, aliases: [String] = [], value valueName: String? = nil, default defaultValue: String? = nil, help: String) {
        self.name = ArgumentParser.normalize(spelling)
        self.spelling = spelling
        self.aliases = aliases
        self.takesValue = valueName != nil
        self.valueName = valueName ?? ""
        self.help = help
        self.defaultValue = defaultValue
    }

    /// `-h`, `--help`, and `--version`: every command has them.
    public static let help = OptionSpec("help", aliases: ["h"], help: "")
    public static let version = OptionSpec("version", help: "Show the version.")

    /// How the option is shown in help: `--receiver_ports <ports>`.
    var display: String {
        let main = spelling.count == 1 ? "-\(spelling)" : "--\(spelling)"
        let short = aliases.filter { $0.count == 1 }.map { "-\($0)" }
        let names = (short + [main]).joined(separator: ", ")
        return takesValue ? "\(names) <\(valueName)>" : names
    }
}

/// The result of parsing: option values by canonical name, flags present, positionals in order.
public struct ParsedArguments: Sendable {
    public var values: [String: String] = [:]
    public var flags: Set<String> = []
    public var positionals: [String] = []
    var specs: [OptionSpec] = []
    /// The environment the command was started with, read once by its `main` (the edge) and passed
    /// in with its arguments: nothing below reads the process environment itself.
    public var environment: [String: String] = [:]

    /// The value given for `option`, else the default this command declares for it, else nil.
    /// Options are read by their declarations (constants), never by a name in a string; an option
    /// this command does not declare is a programming error, not an empty value.
    public func value(_ option: OptionSpec) -> String? { values[option.name] ?? declaration(option.name).defaultValue }

    /// The value given for `option`, else its declared default, else "" (an option without a default
    /// that was not given). Defaults are written once, in the `OptionSpec`, never again here.
    public func string(_ option: OptionSpec) -> String { value(option) ?? "" }

    /// The value given on the command line for `option`, nil when it was not (its default aside).
    public func given(_ option: OptionSpec) -> String? {
        _ = declaration(option.name)
        return values[option.name]
    }

    /// Whether the flag `option` was given.
    public func isSet(_ option: OptionSpec) -> Bool {
        _ = declaration(option.name)
        return flags.contains(option.name)
    }

    private func declaration(_ key: String) -> OptionSpec {
        guard let spec = specs.first(where: { $0.name == key }) else { preconditionFailure("option '\(key)' is read but not declared") }
        return spec
    }

    /// The declared option named `name` (a name computed at run time, e.g. `prod_scope`): a name
    /// that no option of this command declares is a programming error, not an empty value.
    public func option(named name: String) -> OptionSpec { declaration(ArgumentParser.normalize(name)) }

    /// `value`, `string`, `given` and `isSet` by a name (tools whose options are all local, like
    /// s2bench's modes): the name must be declared, or the program stops.
    public func value(named name: String) -> String? { value(option(named: name)) }
    public func isSet(named name: String) -> Bool { isSet(option(named: name)) }

}

/// One item of a usage line, in order. Options are named by their declaration (`OptionSpec`), whose
/// spelling and value name the line shows, so that a usage line cannot name a flag that does not
/// exist or spell it differently from the parser.
public enum UsageItem: Sendable {
    /// `[--name <value>]`; `value` replaces `<value>` (e.g. `True` for `[--mock True]`).
    case optional(String, value: String? = nil)
    /// `--name <value>`.
    case required(String, value: String? = nil)
    /// Several options that go together: `[--client-id <id> --client-secret <secret>]`.
    case optionalGroup([String])
    /// A positional argument or other literal text: `<uid>`, `|`.
    case text(String)
}

public enum ArgumentParser {
    /// The usage line of `command`: its items, options shown as declared in `options`.
    public static func usageLine(_ command: String, _ items: [UsageItem], options: [OptionSpec]) -> String {
        func shown(_ name: String, _ value: String?) -> String {
            let key = normalize(name)
            // A usage item must name a declared option; the tests check every command's line.
            guard let spec = options.first(where: { $0.name == key }) else { return "--\(name)" }
            let flag = spec.spelling.count == 1 ? "-\(spec.spelling)" : "--\(spec.spelling)"
            if let value { return "\(flag) \(value)" }
            return spec.takesValue ? "\(flag) <\(spec.valueName)>" : flag
        }
        let parts = items.map { item -> String in
            switch item {
            case .optional(let name, let value): "[\(shown(name, value))]"
            case .required(let name, let value): shown(name, value)
            case .optionalGroup(let names): "[" + names.map { shown($0, nil) }.joined(separator: " ") + "]"
            case .text(let text): text
            }
        }
        return ([command] + parts).joined(separator: " ")
    }

    /// The usage line showing every option of `options` (optional, in declaration order) but `except`.
    public static func usageLine(_ command: String, every options: [OptionSpec], except: Set<String> = ["help", "version"]) -> String {
        usageLine(command, options.filter { !except.contains($0.name) }.map { .optional($0.name) }, options: options)
    }

    /// The names of the options that `items` mention but `options` does not declare (for tests).
    public static func undeclared(_ items: [UsageItem], options: [OptionSpec]) -> [String] {
        let names = items.flatMap { item -> [String] in
            switch item {
            case .optional(let name, _), .required(let name, _): [name]
            case .optionalGroup(let names): names
            case .text: []
            }
        }
        return names.filter { name in !options.contains { $0.name == normalize(name) } }
    }

    /// A boolean as the options spell it (`--ssl True`): the Python-style `True` or `False`.
    public static func text(_ value: Bool) -> String { value ? "True" : "False" }

    /// A duration as the options that take seconds spell it: `180`, `0.5`.
    public static func seconds(_ duration: Duration) -> String {
        let milliseconds = duration.wholeMilliseconds
        return milliseconds % 1000 == 0 ? "\(milliseconds / 1000)" : "\(Double(milliseconds) / 1000)"
    }

    /// Normalises a spelling: drops leading dashes, `-` between words becomes `_`, lowercased.
    package static func normalize(_ name: String) -> String {
        var trimmed = Substring(name)
        while trimmed.hasPrefix("-") { trimmed = trimmed.dropFirst() }
        return trimmed.replacingOccurrences(of: "-", with: "_").lowercased()
    }

    public static func parse(_ arguments: [String], options: [OptionSpec], maxPositionals: Int) throws(UsageError) -> ParsedArguments {
        var result = ParsedArguments()
        result.specs = options
        var index = 0
        var onlyPositionals = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if onlyPositionals || !argument.hasPrefix("-") || argument == "-" {
                result.positionals.append(argument)
                continue
            }
            if argument == "--" {
                onlyPositionals = true
                continue
            }
            var name = argument
            var inlineValue: String? = nil
            if let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            let key = normalize(name)
            guard let spec = options.first(where: { $0.name == key || $0.aliases.contains(key) }) else {
                throw UsageError("unknown option '\(name)'")
            }
            if spec.takesValue {
                if let inlineValue {
                    result.values[spec.name] = inlineValue
                } else if index < arguments.count {
                    result.values[spec.name] = arguments[index]
                    index += 1
                } else {
                    throw UsageError("missing value for '\(name)' (expected \(spec.display))")
                }
            } else {
                if let inlineValue {
                    // `--verbose=True` style: accept booleans for flags too.
                    if try parseBool(inlineValue, option: name) { result.flags.insert(spec.name) }
                } else {
                    result.flags.insert(spec.name)
                }
            }
        }
        if result.positionals.count > maxPositionals {
            let extra = result.positionals[maxPositionals...].map { "'\($0)'" }.joined(separator: " ")
            throw UsageError("unexpected argument\(result.positionals.count - maxPositionals > 1 ? "s" : "") \(extra)")
        }
        return result
    }

    /// Parses a Python-style boolean as the seeds use it (`--ssl=False`, `--mock True`).
    public static func parseBool(_ text: String, option: String) throws(UsageError) -> Bool {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw UsageError("'\(text)' is not a boolean for '\(option)': use True or False")
        }
    }

    /// Parses an integer option within bounds, naming the option and the bounds when it is not.
    public static func parseInt(_ text: String, option: String, range: ClosedRange<Int>) throws(UsageError) -> Int {
        guard let value = Int(text), range.contains(value) else {
            throw UsageError("'\(text)' is not valid for '--\(option)': use an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// Parses a duration option: a number of seconds, or a number with the unit `s`, `m`, `h` or `d`
    /// (`36h`, `90m`, `3600s`, `1.5h`), from a millisecond to 10 years.
    public static func parseDuration(_ text: String, option: String) throws(UsageError) -> Duration {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
        var number = Substring(text)
        var scale = 1.0
        if let last = number.last, let unit = units[last] {
            number = number.dropLast()
            scale = unit
        }
        let isDecimal = !number.isEmpty && number.allSatisfy { $0.isASCII && ($0.isNumber || $0 == ".") } && number.filter { $0 == "." }.count <= 1
        guard isDecimal, let value = Double(number), (0.001...(10 * 365 * 86_400)).contains(value * scale) else {
            throw UsageError("'\(text)' is not valid for '--\(option)': use a duration such as 36h, 90m, 3600s or 3600 (seconds), from 0.001s to 3650d")
        }
        return .milliseconds(Int64((value * scale * 1000).rounded()))
    }

    /// The help text of a command: usage, description, options with defaults.
    public static func help(usage: String, abstract: String, options: [OptionSpec], discussion: String = "") -> String {
        var text = "OVERVIEW: \(abstract)\n\nUSAGE: \(usage)\n"
        if !discussion.isEmpty { text += "\n\(discussion)\n" }
        text += "\nOPTIONS:\n"
        let width = min(40, (options.map { $0.display.count }.max() ?? 0) + 2)
        for option in options {
            var line = "  " + option.display
            let padding = max(1, width - option.display.count)
            line += String(repeating: " ", count: padding)
            line += option.help
            if let defaultValue = option.defaultValue { line += " (default: \(defaultValue))" }
            text += line + "\n"
        }
        text += "  -h, --help" + String(repeating: " ", count: max(1, width - 10)) + "Show help information.\n"
        return text
    }
}
