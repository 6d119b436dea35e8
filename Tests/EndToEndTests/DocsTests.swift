import Foundation
import Testing

/// The user documentation cannot drift from the code: the tutorial shows exactly the commands the
/// tutorial test runs, every s2uc/s2cs option the docs name exists, and every link resolves.
@Suite struct DocsTests {
    static let docs = ["docs/user-guide.md", "docs/tutorial.md", "docs/troubleshooting.md", "docs/faq.md", "certs/README.md", "docs/deployment.md"]

    static func text(_ path: String) throws -> String {
        try String(contentsOf: Harness.repoRoot.appendingPathComponent(path), encoding: .utf8)
    }

    @Test func theTutorialShowsExactlyTheCommandsTheTutorialTestRuns() throws {
        let document = try TutorialDocument.load()
        #expect(document.commands.map(\.line) == Tutorial.all)
        for command in document.commands where Tutorial.background.contains(command.line) {
            #expect(command.output == nil, "'\(command.line)' keeps running: its output cannot be shown as exact (use a plain ``` block)")
        }
        // The outputs it shows as exact are the ones the test compares; there are some.
        #expect(document.commands.filter { $0.output != nil }.count >= 10)
    }

    @Test func theParserFollowsTheTutorialsConventions() {
        let document = TutorialDocument(markdown: """
            Intro.

            ```bash
            # a comment
            one --flag
            ```

            ```text
            exact output
            ```

            ```bash
            two
            three
            ```

            ```text
            not the output of either
            ```

            ```bash
            four
            ```

            Some prose.

            ```text
            not the output of four
            ```

            ```bash
            five
            ```

            ```
            a sample
            ```
            """)
        #expect(document.commands == [
            .init(line: "one --flag", output: "exact output\n"),
            .init(line: "two"), .init(line: "three"), .init(line: "four"), .init(line: "five"),
        ])
    }

    /// The options the docs give to s2uc or s2cs in commands, as (command, subcommand, option):
    /// lines of ```bash blocks and `inline code` that run s2uc or s2cs (possibly through
    /// `scripts/testbed exec HOST` or `sudo`).
    static func options(in markdown: String) -> [(String, String?, String)] {
        var found: [(String, String?, String)] = []
        var fence: String? = nil
        for rawLine in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("```") {
                fence = fence == nil ? String(line.dropFirst(3)) : nil
                continue
            }
            var candidates: [String] = []
            if fence == "bash" { candidates.append(line) }
            if fence == nil { candidates += line.matches(of: /`([^`]+)`/).map { String($0.1) } }
            for candidate in candidates {
                var words = candidate.split(separator: " ").map(String.init)
                if words.first == "sudo" { words.removeFirst() }
                if words.count >= 3 && words[0] == "scripts/testbed" && words[1] == "exec" { words.removeFirst(3) }
                guard let command = words.first, command == "s2uc" || command == "s2cs" else { continue }
                let subcommand = command == "s2uc" && words.count > 1 && !words[1].hasPrefix("-") ? words[1] : nil
                for word in words.dropFirst() where word.hasPrefix("--") {
                    let name = String(word.prefix { $0 != "=" })
                    if name.count > 2 { found.append((command, subcommand, name)) }
                }
            }
        }
        return found
    }

    @Test func everyOptionTheDocsGiveS2ucOrS2csExists() async throws {
        var helps: [String: String] = [:]
        func help(_ command: String, _ subcommand: String?) async -> String {
            let key = "\(command) \(subcommand ?? "")"
            if let known = helps[key] { return known }
            let path = command == "s2uc" ? Harness.s2uc : Harness.s2cs
            let output = await Harness.run(path, (subcommand.map { [$0] } ?? []) + ["--help"])
            helps[key] = output.stdout
            return output.stdout
        }
        var checked = 0
        for path in Self.docs {
            for (command, subcommand, option) in Self.options(in: try Self.text(path)) {
                // `s2uc --ssl False` in prose means the option of any s2uc subcommand.
                var text = await help(command, subcommand)
                if command == "s2uc" && subcommand == nil {
                    for name in ["inbound_request", "outbound_request", "release", "list", "login", "check-auth", "logout"] { text += await help("s2uc", name) }
                }
                let spellings = [option, option.replacingOccurrences(of: "_", with: "-"), option.replacingOccurrences(of: "-", with: "_")]
                let known = spellings.contains { text.contains($0 + " ") || text.contains($0 + ",") || text.contains($0 + "\n") }
                    || ["--help", "--version"].contains(option)
                #expect(known, "\(path): '\(command) \(subcommand ?? "")' has no option \(option)")
                checked += 1
            }
        }
        #expect(checked > 20, "only \(checked) options found in the docs: is the extraction broken?")
    }

    /// GitHub's heading anchors: lower case, punctuation dropped, spaces as dashes.
    static func anchor(_ heading: String) -> String {
        String(heading.lowercased().compactMap { character -> Character? in
            if character == " " { return "-" }
            if character.isLetter || character.isNumber || character == "-" || character == "_" { return character }
            return nil
        })
    }

    @Test func everyLinkInTheDocsResolves() throws {
        for path in Self.docs {
            let base = Harness.repoRoot.appendingPathComponent(path).deletingLastPathComponent()
            for link in try Self.text(path).matches(of: /\]\(([^)\s]+)\)/) {
                let target = String(link.1)
                if target.hasPrefix("http://") || target.hasPrefix("https://") { continue }
                let parts = target.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                let file = parts[0].isEmpty ? Harness.repoRoot.appendingPathComponent(path) : base.appendingPathComponent(parts[0]).standardized
                #expect(FileManager.default.fileExists(atPath: file.path), "\(path): broken link \(target)")
                if parts.count == 2, let text = try? String(contentsOf: file, encoding: .utf8) {
                    let anchors = text.split(separator: "\n").filter { $0.hasPrefix("#") }
                        .map { Self.anchor($0.drop { $0 == "#" }.trimmingCharacters(in: .whitespaces)) }
                    #expect(anchors.contains(parts[1]), "\(path): no heading for #\(parts[1]) in \(parts[0])")
                }
            }
        }
    }
}
