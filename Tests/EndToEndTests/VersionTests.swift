import Foundation
import Testing
import SciStreamCommandLine

/// Versions as the original prints them, from one source (SciStreamVersion), which the image build
/// reads too.
@Suite struct VersionTests {
    @Test func s2ucAndS2csPrintTheirVersionsAsTheOriginalDoes() async {
        for arguments in [["--version"], ["-v"], ["version"]] {
            let output = await Harness.s2uc(arguments)
            #expect(output.status == 0 && output.stdout == "s2uc, version \(SciStreamVersion.string)\n", "\(arguments): \(output.stdout)\(output.stderr)")
        }
        let daemon = await Harness.run(Harness.s2cs, ["--version"])
        #expect(daemon.status == 0 && daemon.stdout == "s2cs, version: \(SciStreamVersion.string)\n", "\(daemon.stdout)\(daemon.stderr)")
    }

    @Test func theImageBuildReadsTheSameVersion() {
        // scripts/build-image's own extraction, run on the source file it names.
        let output = Harness.runSync("/bin/sed", ["-n", "s/.*static let string = \"\\(.*\\)\".*/\\1/p",
                                                  Harness.repoRoot.appendingPathComponent("Sources/SciStreamCommandLine/Exit.swift").path])
        #expect(output.stdout == "\(SciStreamVersion.string)\n")
        let script = (try? String(contentsOf: Harness.repoRoot.appendingPathComponent("scripts/build-image"), encoding: .utf8)) ?? ""
        #expect(script.contains("static let string = ") && script.contains("Sources/SciStreamCommandLine/Exit.swift"))
    }
}
