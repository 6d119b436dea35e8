#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import Foundation
import SciStreamSystem

// The session folder: where it is, how it is created and kept private, and old logs pruned.
extension DataPlane {
    /// The folder s2cs keeps session files in: `$HAPROXY_CONFIG_PATH`, or `~/.scistream`, from the
    /// environment s2cs was started with (read once, at the edge, and passed in).
    public static func defaultFolder(environment: [String: String]) -> String {
        if let configured = environment["HAPROXY_CONFIG_PATH"], !configured.isEmpty { return configured }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.scistream" }
        if let entry = getpwuid(geteuid()), let directory = entry.pointee.pw_dir {
            return String(cString: directory) + "/.scistream"
        }
        return "/root/.scistream"
    }

    /// Creates the folder (and missing parents) with mode 0700. The folder itself is opened without
    /// following a symbolic link and checked and tightened through that descriptor, never by path: a
    /// link planted where the folder should be (to /etc, say) is refused, never chmod'ed through. It
    /// must be a directory owned by the user s2cs runs as and not a shared one (sticky bit, like
    /// /tmp); if it is open to others, it is tightened to 0700 with a warning.
    static func prepareFolder(_ folder: String, logger: Logger) throws(DataPlaneError) {
        let shown = printable(folder, limit: 200)
        guard isConfigSafePath(folder) else {
            throw .folder(path: shown, reason: "the path must be absolute and use only letters, digits and . _ / + @ % = , - "
                + "(it is written into proxy configs)")
        }
        var partial = ""
        for component in folder.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, 0o700) != 0 && errno != EEXIST {
                throw .folder(path: shown, reason: "cannot create \(partial): \(Errno.current)")
            }
        }
        // `partial` is the folder without a trailing slash, which would make open follow a link.
        let fd = open(partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let error = Errno.current
            var link = stat()
            if lstat(partial, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK {
                throw .folder(path: shown, reason: "it is a symbolic link: give the folder itself, not a link to it")
            }
            throw .folder(path: shown, reason: error.rawValue == ENOTDIR ? "it is not a directory" : error.description)
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .folder(path: shown, reason: Errno.current.description) }
        guard info.st_uid == geteuid() else {
            throw .folder(path: shown, reason: "it belongs to uid \(info.st_uid), not to the user s2cs runs as (uid \(geteuid()))")
        }
        guard info.st_mode & S_ISVTX == 0 else {
            throw .folder(path: shown, reason: "it is a shared directory (sticky bit): give a private one")
        }
        if info.st_mode & 0o077 != 0 {
            guard fchmod(fd, 0o700) == 0 else { throw .folder(path: shown, reason: "cannot chmod 700: \(Errno.current)") }
            logger.warning("session folder was open to other users: now 0700",
                           ["folder": folder, "was": String(info.st_mode & 0o777, radix: 8)])
        }
    }

    /// Removes the logs of released sessions older than `SessionLog.retention`, and the oldest beyond
    /// `SessionLog.maximumKept`; a session whose config is in the folder (it runs) keeps its log.
    func pruneLogs() async {
        let folder = self.folder
        let removed = await BlockingWork.run { SessionLog.prune(folder: folder) }
        if removed > 0 { logger.info("old session logs removed", ["count": String(removed), "folder": folder]) }
    }
}
