#if canImport(Glibc)
import Glibc
#endif
import COpenSSL

/// How a server is named to the client: an IP literal or a host name.
enum ServerName {
    /// The address, without brackets or an IPv6 zone ("%eth0"), if `name` is an IPv4 or IPv6
    /// literal; nil for a host name.
    static func ipLiteral(_ name: String) -> String? {
        var bare = name
        if bare.hasPrefix("["), bare.hasSuffix("]") {
            bare = String(bare.dropFirst().dropLast())
        }
        if let percent = bare.firstIndex(of: "%"), bare.contains(":") {
            bare = String(bare[..<percent])
        }
        var v4 = in_addr()
        if inet_pton(AF_INET, bare, &v4) == 1 { return bare }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, bare, &v6) == 1 { return bare }
        return nil
    }
}

/// The names a certificate is for, as an operator would write them.
enum CertificateNames {
    /// The DNS and IP entries of the subjectAltName, else the subject's CN.
    static func names(of certificate: OpaquePointer) -> [String] {
        var names: [String] = []
        if let alternatives = scistream_X509_subject_alt_names(certificate) {
            defer { GENERAL_NAMES_free(alternatives) }
            for index in 0..<scistream_sk_GENERAL_NAME_num(alternatives) {
                guard let entry = scistream_sk_GENERAL_NAME_value(alternatives, index) else { continue }
                switch entry.pointee.type {
                case GEN_DNS:
                    if let text = entry.pointee.d.dNSName.flatMap(string(of:)) { names.append(text) }
                case GEN_IPADD:
                    if let address = entry.pointee.d.iPAddress.flatMap(bytes(of:)), let text = ipText(address) {
                        names.append(text)
                    }
                default:
                    continue
                }
            }
        }
        if names.isEmpty, let subject = X509_get_subject_name(certificate) {
            var buffer = [CChar](repeating: 0, count: 256)
            let count = X509_NAME_get_text_by_NID(subject, NID_commonName, &buffer, Int32(buffer.count))
            if count > 0 {
                names.append(String(decoding: buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
            }
        }
        return names
    }

    private static func bytes(of string: UnsafeMutablePointer<ASN1_STRING>) -> [UInt8]? {
        let length = Int(ASN1_STRING_length(string))
        guard length > 0, let data = ASN1_STRING_get0_data(string) else { return nil }
        return Array(UnsafeBufferPointer(start: data, count: length))
    }

    private static func string(of string: UnsafeMutablePointer<ASN1_STRING>) -> String? {
        bytes(of: string).map { String(decoding: $0, as: UTF8.self) }
    }

    private static func ipText(_ address: [UInt8]) -> String? {
        let family: Int32
        switch address.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return nil
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let converted = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        guard converted != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
