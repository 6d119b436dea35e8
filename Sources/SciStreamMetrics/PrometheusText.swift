/// The Prometheus text exposition format, written line by line. A page holds five samples per
/// session: each is appended in place, and a value is escaped only when it has a byte to escape
/// (label values are uid prefixes, roles and names), so a scrape of 1,000 sessions does not pay
/// for a search-and-replace per label.
package struct PrometheusText {
    package private(set) var text = ""

    package init() {}

    /// Lines made before (a `SessionSeriesPage`), as they are.
    package mutating func append(_ lines: String) {
        text += lines
    }

    package mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) "
        Self.append(help, escaping: false, to: &text)
        text += "\n# TYPE \(name) \(type)\n"
    }

    package mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{"
            for (index, label) in labels.enumerated() {
                if index > 0 { text += "," }
                text += label.key
                text += "=\""
                Self.append(label.value, escaping: true, to: &text)
                text += "\""
            }
            text += "}"
        }
        text += " "
        text += Self.number(value)
        text += "\n"
    }

    /// A label value: backslash, double quote and line feed escaped.
    package static func escape(_ value: String) -> String {
        var escaped = ""
        append(value, escaping: true, to: &escaped)
        return escaped
    }

    /// Appends `value` with backslash and line feed escaped, and the double quote too when `quotes`
    /// (a label value; HELP text leaves quotes as they are).
    private static func append(_ value: String, escaping quotes: Bool, to text: inout String) {
        let special: (UInt8) -> Bool = { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\n") || (quotes && $0 == UInt8(ascii: "\"")) }
        guard value.utf8.contains(where: special) else {
            text += value
            return
        }
        for character in value.unicodeScalars {
            switch character {
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\"" where quotes: text += "\\\""
            default: text.unicodeScalars.append(character)
            }
        }
    }

    /// Integers without a fraction, others as Swift prints them (`0.025`).
    package static func number(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }
}
