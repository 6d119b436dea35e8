import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem

/// The tokens s2uc holds for one scope (one s2cs client id).
public struct StoredToken: Codable, Sendable, Equatable {
    public var accessToken: String
    public var refreshToken: String?
    /// When the access token expires, seconds since the Unix epoch.
    public var expiresAt: Int
    public var resourceServer: String
    /// The scope string granted, e.g. `https://auth.globus.org/scopes/<id>/scistream`.
    public var scope: String

    public init(accessToken: String, refreshToken: String?, expiresAt: Int, resourceServer: String, scope: String) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.expiresAt = expiresAt
        self.resourceServer = resourceServer
        self.scope = scope
    }

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token", refreshToken = "refresh_token", expiresAt = "expires_at"
        case resourceServer = "resource_server", scope
    }

    /// Whether the access token is expired, or expires within `margin` seconds.
    public func expires(within margin: Int, now: Int = Int(Date().timeIntervalSince1970)) -> Bool {
        expiresAt <= now + margin
    }
}

/// The whole token file: tokens by scope id, and which scope each s2cs address was logged in for.
public struct TokenFile: Codable, Sendable, Equatable {
    public var version = 1
    public var tokens: [String: StoredToken] = [:]
    /// `host:port` of an s2cs → the scope id to use for it when `--scope` is not given.
    public var addresses: [String: String] = [:]

    public init() {}
}

/// s2uc's token file, `$HOME/.scistream/tokens.json`: mode 0600 in a 0700 folder, written by
/// `AtomicFile` (a temporary name created 0600 with O_EXCL, synced, renamed over the old file), so
/// that there is never a moment when the tokens are readable by others or half-written. Read-modify-write cycles hold an
/// exclusive `flock` on the folder, so that two s2uc processes do not refresh over each other.
public struct TokenStore: Sendable {
    public let folder: String
    public let path: String
    /// Where warnings go (a loosened mode that was tightened again).
    public let warn: @Sendable (String) -> Void
    static let maxFileSize = 1 << 20
    public static let fileName = "tokens.json"

    public init(folder: String, warn: @escaping @Sendable (String) -> Void = { _ in }) {
        self.folder = folder
        self.path = folder + "/" + Self.fileName
        self.warn = warn
    }

    /// The standard store: `$HOME/.scistream` (HOME from the environment, else the password database).
    public static func standard(environment: [String: String], warn: @escaping @Sendable (String) -> Void = { _ in }) throws(AuthError) -> TokenStore {
        var home = environment["HOME"] ?? ""
        if home.isEmpty, let entry = getpwuid(geteuid()), let dir = entry.pointee.pw_dir {
            home = String(cString: dir)
        }
        guard home.hasPrefix("/") else {
            throw .tokenFile(path: "~/.scistream/\(fileName)", reason: "HOME is not set to an absolute path")
        }
        while home.count > 1 && home.hasSuffix("/") { home.removeLast() }
        return TokenStore(folder: (home == "/" ? "" : home) + "/.scistream", warn: warn)
    }

    // MARK: reading

    /// The file's contents; an empty `TokenFile` when there is no file yet.
    public func load() throws(AuthError) -> TokenFile {
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW)
        } catch {
            if error.rawValue == ENOENT { return TokenFile() }
            if error.rawValue == ELOOP { throw .tokenFile(path: path, reason: "is a symbolic link; refusing to follow it") }
            throw .tokenFile(path: path, reason: "cannot open it: \(error)")
        }
        let info: stat
        do { info = try file.status() } catch { throw .tokenFile(path: path, reason: "cannot stat it: \(error)") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .tokenFile(path: path, reason: "is not a regular file") }
        guard info.st_uid == geteuid() else {
            throw .tokenFile(path: path, reason: "belongs to uid \(info.st_uid), not to you (uid \(geteuid())); remove it")
        }
        if info.st_mode & 0o077 != 0 {
            let old = String(info.st_mode & 0o777, radix: 8)
            do {
                try file.setPermissions(0o600)
                warn("token file \(path) was readable by others (mode 0\(old)); set it to 0600. If others may have read it, run 's2uc logout' to revoke its tokens.")
            } catch {
                throw .tokenFile(path: path, reason: "has mode 0\(old) and cannot be set to 0600: \(error)")
            }
        }
        guard Int(info.st_size) <= Self.maxFileSize else {
            throw .tokenFile(path: path, reason: "is \(info.st_size) bytes, more than a token file can be; delete it and log in again")
        }
        let data: Data
        do {
            data = Data(try file.readAll(limit: Self.maxFileSize))
        } catch {
            if error.rawValue == EFBIG { throw .tokenFile(path: path, reason: "is too large; delete it and log in again") }
            throw .tokenFile(path: path, reason: "cannot read it: \(error)")
        }
        do {
            let file = try JSONDecoder().decode(TokenFile.self, from: data)
            guard file.version == 1 else {
                throw AuthError.tokenFile(path: path, reason: "has format version \(file.version), which this s2uc does not know")
            }
            return file
        } catch let error as AuthError {
            throw error
        } catch {
            throw .tokenFile(path: path, reason: "is not a valid token file (\(Self.describe(error))); delete it and log in again")
        }
    }

    // MARK: writing

    /// Creates the folder 0700 if needed; tightens an existing one that others can enter.
    public func prepareFolder() throws(AuthError) {
        if mkdir(folder, 0o700) == 0 {
            // The umask may have taken bits away, never added any; make it exactly 0700.
            _ = chmod(folder, 0o700)
            return
        }
        let error = Errno.current
        guard error.rawValue == EEXIST else { throw .tokenFile(path: path, reason: "cannot create the folder \(folder): \(error)") }
        var info = stat()
        guard stat(folder, &info) == 0 else { throw .tokenFile(path: path, reason: "cannot stat the folder \(folder): \(Errno.current)") }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw .tokenFile(path: path, reason: "\(folder) exists and is not a folder") }
        guard info.st_uid == geteuid() else {
            throw .tokenFile(path: path, reason: "the folder \(folder) belongs to uid \(info.st_uid), not to you (uid \(geteuid()))")
        }
        if info.st_mode & 0o077 != 0 {
            guard chmod(folder, 0o700) == 0 else {
                throw .tokenFile(path: path, reason: "the folder \(folder) is open to others (mode 0\(String(info.st_mode & 0o777, radix: 8))) and cannot be set to 0700: \(Errno.current)")
            }
        }
    }

    /// Writes the file atomically (`AtomicFile`); removes it when it holds nothing.
    public func save(_ file: TokenFile) throws(AuthError) {
        try prepareFolder()
        if file.tokens.isEmpty && file.addresses.isEmpty {
            try remove()
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do { data = try encoder.encode(file) } catch { throw .tokenFile(path: path, reason: "cannot encode the tokens: \(error)") }
        do {
            try AtomicFile.write([UInt8](data), to: path)
        } catch {
            throw .tokenFile(path: path, reason: error.description)
        }
    }

    /// Deletes the file (nothing to do when there is none).
    public func remove() throws(AuthError) {
        if unlink(path) != 0 {
            let error = Errno.current
            guard error.rawValue == ENOENT else { throw .tokenFile(path: path, reason: "cannot delete it: \(error)") }
        }
        try? AtomicFile.syncFolder(of: path)
    }


    // MARK: locking

    /// Runs `body` on the file's contents under an exclusive lock on the folder and saves what it
    /// leaves if it changed anything. Waits for another s2uc's lock up to `wait` (polling, never blocking a thread).
    public func update<T>(wait: Duration = .seconds(60), _ body: (inout TokenFile) async throws -> T) async throws -> T {
        try prepareFolder()
        let lock: FileDescriptor  // closed when this returns, which releases the lock
        do {
            lock = try FileDescriptor.open(folder, O_RDONLY | O_DIRECTORY)
        } catch {
            throw AuthError.tokenFile(path: path, reason: "cannot open the folder \(folder) to lock it: \(error)")
        }
        let deadline = ContinuousClock.now + wait
        while true {
            do {
                if try lock.tryLock() { break }
            } catch {
                throw AuthError.tokenFile(path: path, reason: "cannot lock the folder \(folder): \(error)")
            }
            guard ContinuousClock.now < deadline else {
                throw AuthError.tokenFile(path: path, reason: "another s2uc has held the lock on \(folder) for more than \(wait)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let before = try load()
        var file = before
        let result = try await body(&file)
        if file != before { try save(file) }
        return result
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): return "not JSON: \(context.debugDescription)"
        case DecodingError.keyNotFound(let key, _): return "missing '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        default: return "\(error)"
        }
    }
}
