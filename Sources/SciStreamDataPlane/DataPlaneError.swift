/// What went wrong in the data plane, worded for the operator who reads it after "Error: ", without
/// command-line options (s2cs adds them: SciStreamServer's `ErrorWording.dataPlane`).
/// Sessions appear by the first 8 characters of their uid only (the full uid is the secret);
/// session files appear as "<folder>/<prefix>*.<ext>", a glob that finds them.
public enum DataPlaneError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The proxy's binary is in none of the `searched` directories.
    case notInstalled(type: DataServerType, searched: [String])
    /// nginx is there but its dynamic stream module is not.
    case nginxStreamModuleMissing(path: String)
    /// A plaintext data plane with a proxy that cannot forward plain TCP.
    case plaintextUnsupported(type: DataServerType)
    /// The session folder cannot be used.
    case folder(path: String, reason: String)
    /// Another s2cs holds the session folder (`SessionFolderLock`); `pid` is the one it wrote.
    case folderInUse(path: String, pid: Int32?)
    /// A session file cannot be written, read or removed.
    case file(path: String, reason: String)
    /// A listener, target or rate is invalid; nothing was written.
    case invalidSpec(session: String, reason: String)
    /// A listener address is taken by someone else (checked before launch).
    case listenerUnavailable(session: String, listener: String, reason: String)
    /// Key derivation or certificate construction failed in OpenSSL.
    case keyMaterial(reason: String)
    /// The proxy could not be executed.
    case spawnFailed(type: DataServerType, session: String, reason: String)
    /// The proxy exited during startup (it refused its config, could not bind...): `message` is its
    /// own error text from its log. There is no separate config check (`haproxy -c`, `nginx -t`):
    /// it would cost as much as the start, on every start.
    case startFailed(type: DataServerType, session: String, message: String)
    /// The proxy ran but did not listen on every listener in time.
    case notReady(type: DataServerType, session: String, listener: String, seconds: Int)
    /// `stop` (or cancellation) arrived while the proxy was starting.
    case stoppedWhileStarting(session: String)

    public var description: String {
        switch self {
        case .notInstalled(let type, let searched):
            let binary = type.binary ?? type.name
            return "\(binary) is not installed: install it with 'sudo apt-get install \(type.debianPackages.joined(separator: " "))'\n"
                + "(the \(type.name) data plane runs \(binary); searched \(searched.isEmpty ? "no directory" : searched.joined(separator: ", ")): "
                + "only absolute directories that root owns and that group and others cannot write, from PATH and the standard ones)"
        case .nginxStreamModuleMissing(let path):
            return "the nginx stream module is not installed (\(path) is missing): install it with 'sudo apt-get install libnginx-mod-stream'"
        case .plaintextUnsupported(let type):
            return "\(type.name) cannot forward plain TCP: use Haproxy or Nginx for a plaintext data plane"
        case .folder(let path, let reason):
            return "cannot use the session folder \(path): \(reason)"
        case .folderInUse(let path, let pid):
            return "the session folder \(path) is in use by another s2cs (\(pid.map { "pid \($0)" } ?? "pid not yet written"), holding \(path)/\(SessionFolderLock.fileName))"
        case .file(let path, let reason):
            return "cannot write \(path): \(reason)"
        case .invalidSpec(let session, let reason):
            return "invalid proxy request for session \(session): \(reason)"
        case .listenerUnavailable(let session, let listener, let reason):
            return "cannot listen on \(listener) for session \(session): \(reason)"
        case .keyMaterial(let reason):
            return "cannot derive the session's key material: \(reason)"
        case .spawnFailed(let type, let session, let reason):
            return "\(type.binary ?? type.name) could not be started for session \(session): \(reason)"
        case .startFailed(let type, let session, let message):
            return "\(type.binary ?? type.name) failed to start for session \(session): \(message)"
        case .notReady(let type, let session, let listener, let seconds):
            return "\(type.binary ?? type.name) did not listen on \(listener) within \(seconds) s for session \(session)"
        case .stoppedWhileStarting(let session):
            return "session \(session) was released while its proxy was starting"
        }
    }
}
