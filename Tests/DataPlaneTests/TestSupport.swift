#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import SciStreamSystem

/// A temporary folder, removed by `remove()`.
struct TemporaryFolder {
    let path: String

    init(_ label: String = "dp") throws {
        var template = Array("/tmp/scistream-\(label)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }  // safe: non-empty array
        guard made != nil else { throw Errno.current }
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: file(name)))
    }

    func read(_ name: String) -> String? { try? String(contentsOfFile: file(name), encoding: .utf8) }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: file(name)) }

    func contents() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs a program to completion (bounded), returning its exit status and combined output.
func run(_ executable: String, _ arguments: [String], in folder: TemporaryFolder,
         timeout: Duration = .seconds(30)) async throws -> (TerminationStatus, String) {
    let log = folder.file("run-\(UInt32.random(in: 0...UInt32.max)).out")
    let child = try await ChildProcess.spawn(executable: executable, arguments: arguments,
                                             environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], logPath: log)
    var status = await child.wait(timeout: timeout)
    if status == nil { status = await child.terminate(grace: .seconds(1)) }
    let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    unlink(log)
    return (status ?? .exited(code: -1), output)
}

/// Asserts that `pid` no longer exists: kill(pid, 0) fails with ESRCH.
func expectGone(_ pid: Int32, sourceLocation: SourceLocation = #_sourceLocation) {
    let result = kill(pid, 0)
    let error = errno
    #expect(result == -1 && error == ESRCH, "pid \(pid) still exists", sourceLocation: sourceLocation)
}
