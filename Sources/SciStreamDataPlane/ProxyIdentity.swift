#if canImport(Glibc)
import Glibc
#endif

/// The unprivileged user and group a proxy drops to when s2cs runs as root. Each proxy drops by
/// itself, after reading its config and key material (which stay 0600 and root's) and binding its
/// listeners: HAProxy `user`/`group` (its workers), nginx `user` (its workers), stunnel
/// `setuid`/`setgid` (the whole process). HAProxy's and nginx's master processes stay root: they
/// only manage the workers, which handle every connection.
public struct ProxyIdentity: Sendable, Equatable {
    public let user: String
    public let group: String
    public let uid: UInt32
    public let gid: UInt32

    public struct LookupError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Looks `name` up in the user database (a name or a numeric uid); its primary group is the group.
    /// Refuses uid 0 and names that could not be written into a proxy config as they are.
    public static func resolve(_ name: String) throws(LookupError) -> ProxyIdentity {
        guard !name.isEmpty, name.utf8.allSatisfy({ isConfigSafeNameByte($0) }) else {
            throw LookupError(description: "'\(printable(name, limit: 64))' is not a user name (letters, digits, '.', '_' and '-')")
        }
        let entry = name.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) ? UInt32(name).flatMap { getpwuid($0) } : getpwnam(name)
        guard let entry, let userName = entry.pointee.pw_name.map({ String(cString: $0) }) else {
            throw LookupError(description: "no user '\(name)' on this host")
        }
        let uid = entry.pointee.pw_uid, gid = entry.pointee.pw_gid
        guard uid != 0 else { throw LookupError(description: "'\(name)' is root: proxies must run as an unprivileged user") }
        guard let groupEntry = getgrgid(gid), let groupName = groupEntry.pointee.gr_name.map({ String(cString: $0) }) else {
            throw LookupError(description: "the primary group \(gid) of '\(userName)' is not in the group database")
        }
        guard userName.utf8.allSatisfy(isConfigSafeNameByte), groupName.utf8.allSatisfy(isConfigSafeNameByte) else {
            throw LookupError(description: "'\(userName)' or its group '\(groupName)' has characters that cannot go into a proxy config")
        }
        return ProxyIdentity(user: userName, group: groupName, uid: uid, gid: gid)
    }

    private static func isConfigSafeNameByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
}
