#if canImport(Glibc)
import Glibc
#endif

/// The one way files are written here (session keys and configs, pid files, s2uc's tokens): never
/// a moment when the file is readable by others or half-written, and on disk when `write` returns.
///
/// `write` creates a fresh temporary name beside the file (`<path>.<random>.tmp`) with
/// `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600, writes every byte, fsyncs it, renames it over `path`,
/// and fsyncs the folder so that the rename itself survives a crash. On failure the temporary file
/// is removed and `path` is left as it was; the descriptor is closed on every path.
public enum AtomicFile {
    /// Which step failed, and why.
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public enum Step: Sendable, Equatable {
            case create, write, sync, rename, syncFolder
        }
        public let step: Step
        public let errno: Errno

        /// Names no path: callers know what to call the file (a session's files are named without
        /// the uid, which is the session's secret).
        public var description: String {
            switch step {
            case .create: "cannot create a temporary file beside it: \(errno)"
            case .write: "cannot write it: \(errno)"
            case .sync: "cannot sync it to disk: \(errno)"
            case .rename: "cannot rename the temporary file over it: \(errno)"
            case .syncFolder: "cannot sync its folder to disk: \(errno)"
            }
        }
    }

    /// The temporary names `write` uses for `path` end with this (a crash can leave one behind).
    public static let temporarySuffix = ".tmp"

    public static func write(_ bytes: [UInt8], to path: String, permissions: mode_t = 0o600) throws(Failure) {
        let temporary = "\(path).\(String(UInt64.random(in: 0...UInt64.max), radix: 16))\(temporarySuffix)"
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, permissions: permissions)
        } catch {
            throw Failure(step: .create, errno: error)
        }
        do throws(Failure) {
            // Exactly `permissions`, whatever the umask took away.
            do { try file.setPermissions(permissions) } catch { throw Failure(step: .create, errno: error) }
            do { try file.writeAll(bytes) } catch { throw Failure(step: .write, errno: error) }
            do { try file.sync() } catch { throw Failure(step: .sync, errno: error) }
            do { try file.close() } catch { throw Failure(step: .write, errno: error) }
            guard rename(temporary, path) == 0 else { throw Failure(step: .rename, errno: Errno.current) }
        } catch {
            _ = unlink(temporary)
            throw error
        }
        do { try syncFolder(of: path) } catch { throw Failure(step: .syncFolder, errno: error) }
    }

    public static func write(_ text: String, to path: String, permissions: mode_t = 0o600) throws(Failure) {
        try write(Array(text.utf8), to: path, permissions: permissions)
    }

    /// fsync(2) on the folder holding `path`: a rename or unlink there is on disk.
    public static func syncFolder(of path: String) throws(Errno) {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let directory = try FileDescriptor.open(folder, O_RDONLY | O_DIRECTORY)
        try directory.sync()
    }
}
