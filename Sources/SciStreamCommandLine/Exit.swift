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

    /// Prints a runtime error (worded by `ErrorWording`) and returns the failure exit status.
    public static func runtimeError(_ error: any Error) -> Int32 {
        err("Error: \(ErrorWording.text(error))")
        return ExitCode.failure
    }
}

/// The one version of s2uc, s2cs, the container image (scripts/build-image reads it from here) and
/// the metrics page. Printed as the original prints it: `s2uc, version X.Y.Z`, `s2cs, version: X.Y.Z`.
public enum SciStreamVersion {
    public static let string = "0.1.0"
    public static var s2ucLine: String { "s2uc, version \(string)" }
    public static var s2csLine: String { "s2cs, version: \(string)" }
}
