import Foundation
import Testing

/// The libFuzzer targets (frame decoder, validators) run for a few seconds each from the committed corpus.
@Suite struct FuzzTests {
    @Test func frameDecoderAndValidatorFuzzersFindNoCrash() async throws {
        let script = Harness.repoRoot.appendingPathComponent("fuzz/run").path
        let output = await Harness.run("/bin/bash", [script, "--seconds", "5"], cwd: Harness.repoRoot)
        #expect(output.status == 0, "fuzz/run failed:\n\(output.stdout)\n\(output.stderr)")
        #expect(output.stdout.contains("frames: ok") && output.stdout.contains("validators: ok"), "\(output.stdout)")
    }

    @Test func theSeedCorpusCoversEveryMessageKind() throws {
        let folder = Harness.repoRoot.appendingPathComponent("fuzz/corpus/frames")
        var kinds: Set<UInt8> = []
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where !name.contains("invalid") {
            let bytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
            if bytes.count > 5 { kinds.insert(bytes[5]) }
        }
        #expect(kinds == [0x01, 0x02, 0x03, 0x04, 0x05, 0x81, 0x82, 0x83, 0x84, 0x85, 0xFF])
    }
}
