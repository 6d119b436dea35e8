#if canImport(Glibc)
import Glibc
#endif
import SciStreamSystem
import SciStreamDataPlane
import SciStreamWire
import SciStreamCommandLine

/// `--client-secret-file PATH`: the Globus Auth client secret read from a file, so that it never
/// appears on a command line (`ps`). A systemd credential (`LoadCredential=`) is such a file, in
/// `$CREDENTIALS_DIRECTORY`. The file holds the secret alone; one trailing newline is dropped.
extension ServerConfiguration {
    static let secretFileLimit = 4096

    static func readClientSecretFile(_ path: String, alsoGiven: Bool) throws(UsageError) -> String {
        if alsoGiven {
            throw UsageError("--client-secret and --client-secret-file are exclusive: give the secret one way (the file keeps it out of 'ps')")
        }
        guard !path.isEmpty else { throw UsageError("--client-secret-file is empty: give the path of a file holding the client secret") }
        let bytes = try readSmallFile(path, option: "--client-secret-file", what: "the client secret", limit: secretFileLimit, mustBePrivate: true)
        var text = Substring(decoding: bytes, as: UTF8.self)
        if text.hasSuffix("\n") { text = text.dropLast() }  // "\r\n" is one Character
        guard !text.isEmpty, !text.allSatisfy({ $0 == " " || $0 == "\t" }) else {
            throw UsageError("--client-secret-file \(path) is empty: put the Globus Auth client secret in it, or leave out --client-id and the secret to run without authentication")
        }
        guard !text.contains(where: { $0.isNewline }) else {
            throw UsageError("--client-secret-file \(path) holds more than one line: it must hold only the client secret")
        }
        return String(text)
    }

    /// A small regular file's bytes, for a flag that names it: at most `limit` bytes; with
    /// `mustBePrivate`, readable by its owner only. Every failure names the flag and the file.
    static func readSmallFile(_ path: String, option: String, what: String, limit: Int, mustBePrivate: Bool) throws(UsageError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            throw UsageError("cannot read \(option) \(path): \(Errno.current) (it must be readable by the user s2cs runs as)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw UsageError("cannot read \(option) \(path): \(Errno.current)") }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw UsageError("\(option) \(path) is not a regular file: give the file holding \(what)")
        }
        guard !mustBePrivate || info.st_mode & 0o077 == 0 else {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw UsageError("\(option) \(path) is readable by other users (mode \(mode)): make it private with 'chmod 600 \(path)'")
        }
        guard info.st_size <= limit else {
            throw UsageError("\(option) \(path) is \(info.st_size) bytes: it must hold only \(what) (at most \(limit) bytes)")
        }
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var count = 0
        while count < bytes.count {
            let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }  // non-empty buffer
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else { throw UsageError("cannot read \(option) \(path): \(Errno.current)") }
            if got == 0 { break }
            count += got
        }
        guard count <= limit else {
            throw UsageError("\(option) \(path) is longer than \(limit) bytes: it must hold only \(what)")
        }
        return Array(bytes.prefix(count))
    }

    static let listFileLimit = 1 << 20

    /// The value of a list flag (`--allowed-targets`, `--allowed-identities`, `--peer-gateways`):
    /// as given, or with `@FILE` the file's entries (one or more per line, separated by commas or
    /// white space; `#` starts a comment), joined with commas. A file is read again on every
    /// reload (SIGHUP), so that the list can change without a restart.
    static func listValue(_ text: String, option: String) throws(UsageError) -> String {
        guard text.hasPrefix("@") else { return text }
        let path = String(text.dropFirst())
        guard !path.isEmpty else { throw UsageError("\(option) @ needs a file name: \(option) @/etc/scistream/\(option.dropFirst(2))") }
        let bytes = try readSmallFile(path, option: option, what: "the list", limit: listFileLimit, mustBePrivate: false)
        let entries = String(decoding: bytes, as: UTF8.self).split(separator: "\n").flatMap { line in
            (line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
                .split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" || $0 == "\r" })
        }
        guard !entries.isEmpty else {
            throw UsageError("\(option) \(path) lists nothing: put one entry per line in it, or leave out \(option)")
        }
        return entries.joined(separator: ",")
    }
}

/// `--proxy-user NAME`: when s2cs runs as root, the unprivileged user its proxies drop to (default
/// `nobody`). Without root there is nothing to drop, and the flag is refused.
extension ServerConfiguration {
    static let defaultProxyUser = "nobody"

    /// The identity proxies drop to, or nil when s2cs does not run as root. Throws the line the
    /// operator reads.
    func proxyIdentity(effectiveUID: UInt32) throws(StartupError) -> ProxyIdentity? {
        guard effectiveUID == 0 else {
            if let proxyUser {
                throw StartupError("--proxy-user \(proxyUser) needs s2cs to run as root (it runs as uid \(effectiveUID)): its proxies already run as uid \(effectiveUID); leave --proxy-user out")
            }
            return nil
        }
        let name = proxyUser ?? Self.defaultProxyUser
        do {
            return try ProxyIdentity.resolve(name)
        } catch {
            throw StartupError("--proxy-user \(name): \(error): name an unprivileged user for the proxies (a dedicated one: useradd --system --no-create-home --shell /usr/sbin/nologin scistream-proxy)")
        }
    }
}

/// Listener addressing: PROD listeners face the other facility's gateway, CONS listeners this
/// facility's applications; each kind binds its own address (`--prod-listener-ip`,
/// `--cons-listener-ip`, both `--listener-ip` by default), and PROD listeners may be told to clients
/// as another address (`--advertise-ip`), one that need not be local.
extension ServerConfiguration {
    /// The address `role`'s listeners bind to.
    public func bindIP(for role: Role) -> String {
        (role == .prod ? prodListenerIP : consListenerIP) ?? listenerIP
    }

    /// The address clients are told for `role`'s listeners.
    public func advertisedIP(for role: Role) -> String {
        role == .prod ? advertiseIP ?? bindIP(for: .prod) : bindIP(for: .cons)
    }

    /// The start-up check: each bind address is one of this host's (the advertised one need not be).
    /// Returns the message for the first that is not.
    func unbindableListenerAddress(canBind: (String) -> Bool) -> String? {
        let given = [("--listener-ip", listenerIP, prodListenerIP == nil || consListenerIP == nil),
                     ("--prod-listener-ip", prodListenerIP ?? "", prodListenerIP != nil),
                     ("--cons-listener-ip", consListenerIP ?? "", consListenerIP != nil)]
        for (flag, address, used) in given where used && !canBind(address) {
            return "\(flag) \(address) is not an address of this host: session listeners could not bind to it (use one of this host's addresses, or 0.0.0.0; behind NAT, bind a local address and give the public one with --advertise-ip)"
        }
        return nil
    }
}
