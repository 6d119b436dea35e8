#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import SciStreamSystem

// Where the proxy's binary is found: trusted directories only, and the environment it runs with.
extension DataPlane {
    /// The standard directories searched after PATH's (HAProxy and nginx live in /usr/sbin, which a
    /// non-root PATH often lacks).
    static let standardDirectories = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]

    /// Where proxy binaries are looked for: the directories of `path` (PATH), then the standard ones,
    /// keeping only those that are absolute and that root owns and group and others cannot write,
    /// all the way up to `/` (`isTrustedDirectory`). A relative entry ("", ".", "bin") or one a
    /// user could plant a `haproxy` in is skipped: s2cs may run as root and start what it finds.
    static func defaultSearchPath(path: String?) -> [String] {
        var result: [String] = []
        for directory in (path ?? "").split(separator: ":", omittingEmptySubsequences: false).map(String.init) + standardDirectories
        where !result.contains(directory) && isTrustedDirectory(directory) {
            result.append(directory)
        }
        return result
    }

    /// Whether `directory` is absolute and it and every directory above it (symbolic links
    /// resolved) belong to root and are not writable by group or others.
    static func isTrustedDirectory(_ directory: String) -> Bool {
        guard directory.hasPrefix("/"), let resolved = realpath(directory, nil) else { return false }
        defer { free(resolved) }
        var current = String(cString: resolved)
        while true {
            var info = stat()
            guard stat(current, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR, info.st_uid == 0,
                  info.st_mode & 0o022 == 0 else { return false }
            if current == "/" { return true }
            guard let slash = current.lastIndex(of: "/") else { return false }
            current = slash == current.startIndex ? "/" : String(current[..<slash])
        }
    }

    /// Whether the file at `path` (symbolic links resolved) belongs to root, is not writable by group
    /// or others, and lies in a trusted directory.
    static func isTrustedFile(_ path: String) -> Bool {
        guard let resolved = realpath(path, nil) else { return false }
        defer { free(resolved) }
        let real = String(cString: resolved)
        var info = stat()
        guard stat(real, &info) == 0, info.st_uid == 0, info.st_mode & 0o022 == 0,
              let slash = real.lastIndex(of: "/") else { return false }
        return isTrustedDirectory(slash == real.startIndex ? "/" : String(real[..<slash]))
    }

    /// The environment proxies run with: a fixed PATH and the C locale (English error texts, which
    /// `start` quotes). Nothing of s2cs's own environment is passed on.
    static let childEnvironment = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"]

    /// The proxy's executable path; nil for Mock. With `requireTrusted`, a file that root does not
    /// own, or that group or others can write, is passed over.
    static func locateBinary(_ type: DataServerType, searchPath: [String], requireTrusted: Bool) throws(DataPlaneError) -> String? {
        guard let binary = type.binary else { return nil }
        var found: String? = nil
        for directory in searchPath where !directory.isEmpty {
            guard let path = ChildProcess.findExecutable(binary, searchPath: [directory]) else { continue }
            if requireTrusted && !isTrustedFile(path) { continue }
            found = path
            break
        }
        guard let found else { throw .notInstalled(type: type, searched: searchPath) }
        if type == .nginx && access(ProxyConfig.nginxStreamModule, R_OK) != 0 {
            throw .nginxStreamModuleMissing(path: ProxyConfig.nginxStreamModule)
        }
        return found
    }
}
