#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing
@testable import SciStreamSystem

/// A temporary folder of this suite's, removed at deinit.
final class Scratch {
    let path: String
    init() throws {
        var template = Array("/tmp/scistream-fd-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }  // safe: non-empty array
        try #require(made != nil)
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func file(_ name: String) -> String { path + "/" + name }
    func contents() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }

    /// The descriptors of this process that refer to something in the folder (a leak shows here).
    func openDescriptors() -> [String] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)") }
            .filter { $0.hasPrefix(path) }
    }
}

private let interruptions = Atomic(0)

@Suite("FileDescriptor")
struct FileDescriptorTests {
    @Test func writeAllThenReadAllRoundTripsMoreThanOneChunk() throws {
        let scratch = try Scratch()
        let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        do {
            let file = try FileDescriptor.open(scratch.file("data"), O_WRONLY | O_CREAT | O_EXCL)
            try file.writeAll(bytes)
            try file.close()
        }
        let file = try FileDescriptor.open(scratch.file("data"), O_RDONLY)
        #expect(try file.readAll(limit: 1 << 20) == bytes)
        #expect(try file.status().st_size == 300_000)
    }

    @Test func readAllStopsPastItsLimit() throws {
        let scratch = try Scratch()
        try Data(count: 200_000).write(to: URL(fileURLWithPath: scratch.file("big")))
        let file = try FileDescriptor.open(scratch.file("big"), O_RDONLY)
        #expect(throws: Errno(EFBIG)) { try file.readAll(limit: 100_000) }
    }

    @Test func openIsCloseOnExecAndFailuresAreErrnos() throws {
        let scratch = try Scratch()
        let file = try FileDescriptor.open(scratch.file("a"), O_WRONLY | O_CREAT, permissions: 0o640)
        #expect(fcntl(file.rawValue, F_GETFD) & FD_CLOEXEC != 0)
        #expect(throws: Errno(ENOENT)) { _ = try FileDescriptor.open(scratch.file("missing"), O_RDONLY) }
        #expect(throws: Errno(EEXIST)) { _ = try FileDescriptor.open(scratch.file("a"), O_WRONLY | O_CREAT | O_EXCL) }
    }

    @Test func theDescriptorIsClosedWhenTheValueGoesAwayOnAnErrorPath() throws {
        let scratch = try Scratch()
        func failing() throws(Errno) {
            let file = try FileDescriptor.open(scratch.file("x"), O_RDONLY | O_CREAT)
            _ = try file.readAll(limit: 0)
            try file.writeAll([1])  // read-only: EBADF, thrown with the descriptor still open...
        }
        #expect(throws: Errno(EBADF)) { try failing() }
        #expect(scratch.openDescriptors().isEmpty, "...and closed on the way out")
        do {
            let file = try FileDescriptor.open(scratch.file("y"), O_RDONLY | O_CREAT)
            #expect(scratch.openDescriptors().count == 1)
            try file.close()  // consumed: no second close at the end of the scope
        }
        #expect(scratch.openDescriptors().isEmpty)
    }

    @Test func aSignalDuringABlockingReadIsRetriedNotThrown() async throws {
        // A handler installed without SA_RESTART: the blocked read(2) returns EINTR, which `read`
        // must retry; the bytes written afterwards are what it returns.
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in interruptions.add(1, ordering: .relaxed) }
        action.sa_flags = 0
        sigemptyset(&action.sa_mask)
        var previous = sigaction()
        try #require(sigaction(SIGUSR2, &action, &previous) == 0)
        defer { sigaction(SIGUSR2, &previous, nil) }

        var ends: [Int32] = [0, 0]
        try #require(pipe(&ends) == 0)
        let writer = FileDescriptor(adopting: ends[1])
        let reader = ends[0]
        let thread = Mutex<(id: pthread_t?, tid: Int32)>((nil, 0))
        let result = Mutex<Result<[UInt8], Errno>?>(nil)
        let worker = Thread {
            // /proc/thread-self links to "<pid>/task/<tid>".
            let tid = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self"))
                .flatMap { Int32($0.split(separator: "/").last ?? "") } ?? 0
            // The test runner may start threads with signals blocked: let this one take SIGUSR2.
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR2)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            thread.withLock { $0 = (pthread_self(), tid) }
            let file = FileDescriptor(adopting: reader)
            var buffer = [UInt8](repeating: 0, count: 16)
            let outcome = Result { () throws(Errno) -> [UInt8] in
                let count = try buffer.withUnsafeMutableBytes { raw in Result { () throws(Errno) in try file.read(into: raw) } }.get()
                return Array(buffer.prefix(count))
            }
            result.withLock { $0 = outcome }
        }
        worker.start()
        // Wait until the worker sleeps in read(2) (state S in its /proc stat), then interrupt it.
        let deadline = ContinuousClock.now + .seconds(10)
        var blocked = false
        while !blocked && ContinuousClock.now < deadline {
            let tid = thread.withLock { $0.tid }
            if tid != 0, let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
               let close = stat.lastIndex(of: ")"), stat[stat.index(after: close)...].split(separator: " ").first == "S" {
                blocked = true
            } else {
                try await Task.sleep(for: .milliseconds(2))
            }
        }
        try #require(blocked, "the worker never blocked in read")
        let before = interruptions.load(ordering: .relaxed)
        let id = try #require(thread.withLock { $0.id })
        #expect(pthread_kill(id, SIGUSR2) == 0)
        while interruptions.load(ordering: .relaxed) == before && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        #expect(interruptions.load(ordering: .relaxed) > before, "the signal was delivered")
        try writer.writeAll(Array("after".utf8))
        while result.withLock({ $0 }) == nil && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(2)) }
        #expect(result.withLock { $0 } == .success(Array("after".utf8)))
    }
}

@Suite("AtomicFile")
struct AtomicFileTests {
    @Test func writesExactlyTheBytesOwnerOnlyAndLeavesNoTemporaryFile() throws {
        let scratch = try Scratch()
        let old = umask(0)
        defer { umask(old) }
        try AtomicFile.write("first\n", to: scratch.file("f"))
        try AtomicFile.write("second\n", to: scratch.file("f"))
        #expect(try String(contentsOfFile: scratch.file("f"), encoding: .utf8) == "second\n")
        var info = stat()
        #expect(stat(scratch.file("f"), &info) == 0 && info.st_mode & 0o777 == 0o600)
        #expect(scratch.contents() == ["f"])
        #expect(scratch.openDescriptors().isEmpty)
    }

    @Test func theModeIsExactWhateverTheUmask() throws {
        let scratch = try Scratch()
        let old = umask(0o277)  // would leave only owner read
        defer { umask(old) }
        try AtomicFile.write([1, 2, 3], to: scratch.file("g"), permissions: 0o640)
        var info = stat()
        #expect(stat(scratch.file("g"), &info) == 0 && info.st_mode & 0o777 == 0o640)
    }

    @Test func aMissingFolderFailsAtCreateAndWritesNothing() throws {
        let scratch = try Scratch()
        #expect(throws: AtomicFile.Failure(step: .create, errno: Errno(ENOENT))) {
            try AtomicFile.write("x", to: scratch.file("no/such/f"))
        }
        #expect(scratch.contents().isEmpty)
    }

    @Test func aFailedRenameRemovesTheTemporaryFileAndLeavesTheTargetAlone() throws {
        let scratch = try Scratch()
        // The target is a folder that is not empty: rename(2) over it fails.
        try FileManager.default.createDirectory(atPath: scratch.file("d/inner"), withIntermediateDirectories: true)
        #expect(throws: AtomicFile.Failure(step: .rename, errno: Errno(EISDIR))) {
            try AtomicFile.write("x", to: scratch.file("d"))
        }
        #expect(scratch.contents() == ["d"])
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: scratch.file("d"))) ?? []) == ["inner"])
        #expect(scratch.openDescriptors().isEmpty, "the descriptor was closed on the failure path")
    }

    @Test func aSymbolicLinkIsReplacedNotFollowed() throws {
        let scratch = try Scratch()
        try "target".write(toFile: scratch.file("target"), atomically: false, encoding: .utf8)
        try #require(symlink(scratch.file("target"), scratch.file("link")) == 0)
        try AtomicFile.write("new", to: scratch.file("link"))
        #expect(try String(contentsOfFile: scratch.file("target"), encoding: .utf8) == "target")
        #expect(try String(contentsOfFile: scratch.file("link"), encoding: .utf8) == "new")
        var info = stat()
        #expect(lstat(scratch.file("link"), &info) == 0 && info.st_mode & S_IFMT == S_IFREG)
    }

    @Test func errorsNameTheStepAndNoPath() {
        #expect(AtomicFile.Failure(step: .sync, errno: Errno(EIO)).description == "cannot sync it to disk: Input/output error")
        #expect(AtomicFile.Failure(step: .rename, errno: Errno(EXDEV)).description
            == "cannot rename the temporary file over it: Invalid cross-device link")
    }
}
