#if canImport(Glibc)
import SciStreamWire
import Glibc
#endif
import SciStreamSystem

/// The files of one session in the session folder: `<uid>.conf`, `.pem` (certificate, then the
/// private key: the bundle HAProxy's `crt` wants; also the trust anchor), `.key` (the private key
/// alone, for nginx and stunnel), `.pid` (written by s2cs only), `.nginx.pid` (nginx's own),
/// `.log` and `.log.1` (the proxy's output, captured by s2cs). All created 0600 in a 0700 folder.
struct SessionFiles: Sendable {
    let folder: String
    let session: SessionID

    var config: String { path("conf") }
    var certificate: String { path("pem") }
    var key: String { path("key") }
    var pid: String { path("pid") }
    /// nginx must write a pid file of its own; it is not `pid`, which only s2cs writes.
    var nginxPID: String { path("nginx.pid") }
    var log: String { path("log") }
    /// The previous part of the log, once `log` reached its size limit (`SessionLog`).
    var rotatedLog: String { path("log.1") }
    /// HAProxy's statistics socket, read for the session's traffic (TrafficMeter).
    var statsSocket: String { path("sock") }
    /// The session's record (`SessionRecord`), from which a restarted s2cs takes the session over.
    var record: String { path("session") }

    /// The name the proxy is started with: a symbolic link to `<uid>.conf` named after a one-way
    /// derivation of the uid (`s2ds-<16 hex>.conf`). A proxy's command line is visible to every
    /// local user (`ps`), and the uid opens the tunnel; the link's name does not reveal it, and the
    /// link itself lies in the 0700 folder.
    var launchConfig: String { "\(folder)/\(label).conf" }

    /// `s2ds-` and 8 bytes of HKDF-SHA256 of the uid (info "scistream s2ds file label v1").
    var label: String {
        let bytes = (try? SessionKeys.hkdf(session.bytes, info: Array("scistream s2ds file label v1".utf8), count: 8)) ?? []
        // HKDF fails only if OpenSSL cannot run at all, and then no key can be derived either.
        return "s2ds-" + (bytes.isEmpty ? session.prefix : bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined())
    }

    /// Everything but the log, which stays for troubleshooting (`cat ~/.scistream/<uid>.log`) until
    /// it is pruned (`SessionLog.prune`).
    var removable: [String] { [record, config, certificate, key, pid, nginxPID, launchConfig, statsSocket] }

    /// The extensions of the files `removable` names by uid (the launch link aside).
    static let removableExtensions = ["session", "conf", "pem", "key", "pid", "nginx.pid", "sock"]

    func path(_ ext: String) -> String { "\(folder)/\(session.text).\(ext)" }

    /// How messages name a session file without the full uid: a glob that finds it.
    func display(_ ext: String) -> String { "\(folder)/\(session.prefix)*.\(ext)" }

    /// Replaces every occurrence of the full uid in `text` (a proxy's message quoting a path) by
    /// the displayable prefix glob.
    func redact(_ text: String) -> String {
        text.replacingAll(session.text, with: "\(session.prefix)*").replacingAll(label, with: "\(session.prefix)*")
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }

    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = self[...]
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }

    /// A minimal substring search (Foundation-free).
    func range(of target: String) -> Range<String.Index>? { self[...].range(of: target) }
}

extension Substring {
    func range(of target: String) -> Range<String.Index>? {
        guard !target.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) {
                return index..<self.index(index, offsetBy: target.count)
            }
            index = self.index(after: index)
        }
        return nil
    }
}

/// Session files are written by System's `AtomicFile` (0600, synced, renamed into place); these
/// word its errors with the file's display name, which never shows the uid.
extension AtomicFile {
    /// Makes `path` a symbolic link to `target` (a name in the same folder), replacing what was there.
    static func link(_ path: String, to target: String, display: String) throws(DataPlaneError) {
        let temporary = "\(path).\(UInt64.random(in: 0...UInt64.max))\(temporarySuffix)"
        guard symlink(target, temporary) == 0 else { throw .file(path: display, reason: Errno.current.description) }
        guard rename(temporary, path) == 0 else {
            let error = Errno.current
            unlink(temporary)
            throw .file(path: display, reason: error.description)
        }
    }

    static func write(_ contents: String, to path: String, display: String) throws(DataPlaneError) {
        do {
            try write(contents, to: path)
        } catch {
            throw .file(path: display, reason: error.description)
        }
    }

    /// Removes `path`; a missing file is fine. Returns the error text otherwise.
    @discardableResult
    static func remove(_ path: String) -> String? {
        if unlink(path) == 0 || errno == ENOENT { return nil }
        return Errno.current.description
    }
}
