import Foundation

/// Exit statuses, as swift-argument-parser uses them.
public enum ExitCode {
    public static let success: Int32 = 0
    public static let failure: Int32 = 1
    public static let usage: Int32 = 64
}

public enum Console {
    public static func out(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    public static func err(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Prints a usage error as swift-argument-parser does and returns the usage exit status.
    public static func usageError(_ error: UsageError, command: String, usage: String) -> Int32 {
        err("Error: \(error.message)")
        err("Usage: \(usage)")
        err("  See '\(command) --help' for more information.")
        return ExitCode.usage
    }

    /// Prints a runtime error and returns the failure exit status.
    public static func runtimeError(_ error: any Error) -> Int32 {
        err("Error: \(error)")
        return ExitCode.failure
    }
}

public enum SciStreamVersion {
    public static let string = "0.1.0"
}
