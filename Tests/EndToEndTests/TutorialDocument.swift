import Foundation

/// The commands docs/tutorial.md shows, in order, with the output it shows after each.
///
/// The tutorial's conventions, which keep it checkable: every command a reader types is alone on
/// its line in a ```bash block (lines starting with `#` are comments); a ```text block right after
/// a one-command ```bash block is that command's exact output (checked by TestbedTutorialTests);
/// output in a plain ``` block is a sample (timings, pids, byte counts) and is not checked.
struct TutorialDocument {
    struct Command: Equatable {
        var line: String
        /// The exact output the tutorial shows for it, if any.
        var output: String?
    }

    var commands: [Command] = []

    static let url = Harness.repoRoot.appendingPathComponent("docs/tutorial.md")

    static func load() throws -> TutorialDocument {
        try TutorialDocument(markdown: String(contentsOf: url, encoding: .utf8))
    }

    init(markdown: String) {
        var fence: String? = nil
        var block: [String] = []
        var lastBlockCommands: [Int] = []  // indices into `commands` of the previous block, if it was a bash block
        for rawLine in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(rawLine)
            if let language = fence {
                if line.hasPrefix("```") {
                    switch language {
                    case "bash":
                        let lines = block.map { $0.trimmingCharacters(in: .whitespaces) }
                            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
                        lastBlockCommands = []
                        for command in lines {
                            lastBlockCommands.append(commands.count)
                            commands.append(Command(line: command))
                        }
                    case "text":
                        if lastBlockCommands.count == 1, let index = lastBlockCommands.first {
                            commands[index].output = block.joined(separator: "\n") + "\n"
                        }
                        lastBlockCommands = []
                    default:
                        lastBlockCommands = []
                    }
                    fence = nil
                    block = []
                } else {
                    block.append(line)
                }
            } else if line.hasPrefix("```") {
                fence = String(line.dropFirst(3)).trimmingCharacters(in: .whitespaces)
            } else if !line.trimmingCharacters(in: .whitespaces).isEmpty {
                lastBlockCommands = []  // prose between a command and a block: the block is not its output
            }
        }
    }
}
