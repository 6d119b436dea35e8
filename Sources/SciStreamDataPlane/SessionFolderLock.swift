#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem

/// One s2cs's hold on its session folder: an exclusive `flock` on `<folder>/s2cs.lock` (0600, no
/// symbolic link), which holds that s2cs's pid, for as long as the value lives. Two s2cs on one
/// folder would write the same `<uid>.conf`, `.pid` and `.log` for the same uid (the two gateways of
/// a session on one host) and read each other's traffic lines; the second one is refused instead.
/// The descriptor is close-on-exec, so that no proxy inherits the lock: it ends with s2cs, even
/// by SIGKILL, and the next s2cs on the folder takes it (and stops the proxies left behind).
public struct SessionFolderLock: ~Copyable {
    public static let fileName = "s2cs.lock"
    private let file: FileDescriptor

    private init(file: consuming FileDescriptor) { self.file = file }

    /// Takes the lock of `folder` (which exists) without waiting, and writes our pid into it.
    /// Throws `.folderInUse` with the holder's pid (as it wrote it) when another s2cs holds it.
    public static func acquire(folder: String) throws(DataPlaneError) -> SessionFolderLock {
        let path = folder + "/" + fileName
        let shown = printable(folder, limit: 200)
        do {
            let file = try FileDescriptor.open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY, permissions: 0o600)
            guard try file.tryLock() else {
                throw DataPlaneError.folderInUse(path: shown, pid: holder(file))
            }
            _ = try retryingInterrupts { ftruncate(file.rawValue, 0) }
            try file.writeAll(Array("\(getpid())\n".utf8))
            return SessionFolderLock(file: file)
        } catch let error as DataPlaneError {
            throw error
        } catch {
            throw .folder(path: shown, reason: "cannot lock \(fileName): \(error)")
        }
    }

    /// The pid the holder wrote (nil if it has not written it yet).
    private static func holder(_ file: borrowing FileDescriptor) -> Int32? {
        guard let bytes = try? file.readAll(limit: 32) else { return nil }
        return Int32(String(decoding: bytes, as: UTF8.self).trimmingTrailingSpaces().split(separator: "\n").first ?? "")
    }

    /// Gives the folder up (at the end of s2cs, after its proxies are stopped).
    public consuming func release() {
        _ = try? file.close()
    }
}
