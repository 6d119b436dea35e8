import SciStreamWire
import Testing
@testable import SciStreamDataPlane

@Suite("Types, validation, configs, log parsing")
struct ProxyConfigTests {
    static let uid = "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3"

    func plan(_ role: ProxyRole, tls: Bool = true, listeners: [ProxyEndpoint] = [ProxyEndpoint(host: "127.0.0.1", port: 5100)],
              targets: [ProxyEndpoint] = [ProxyEndpoint(host: "127.0.0.1", port: 5001)], rate: Int = 0,
              buffers: ProxyBuffers = .standard) throws -> SessionPlan {
        try SessionPlan(ProxySpec(uid: Self.uid, role: role, listeners: listeners, targets: targets, rateKbps: rate),
                        tls: tls, folder: "/home/u/.scistream", processors: 2, buffers: buffers)
    }

    @Test func dataServerTypeParsing() {
        #expect(DataServerType.parse("Haproxy") == .haproxy)
        #expect(DataServerType.parse("HAPROXY") == .haproxy)
        #expect(DataServerType.parse("HaproxySubprocess") == .haproxy)
        #expect(DataServerType.parse("haproxysubprocess") == .haproxy)
        #expect(DataServerType.parse("Nginx") == .nginx)
        #expect(DataServerType.parse("Stunnel") == .stunnel)
        #expect(DataServerType.parse("StunnelSubprocess") == .stunnel)
        #expect(DataServerType.parse("mock") == .mock)
        #expect(DataServerType.parse("NginxSubprocess") == nil)
        #expect(DataServerType.parse("") == nil)
        #expect(DataServerType.allCases.map(\.name) == ["Haproxy", "Nginx", "Stunnel", "Mock"])
        #expect(DataServerType.nginx.debianPackages == ["nginx", "libnginx-mod-stream"])
        #expect(DataServerType.stunnel.debianPackages == ["stunnel4"])
    }

    @Test(arguments: ["127.0.0.1", "0.0.0.0", "10.1.2.3", "::1", "[::1]", "::", "fe80::1", "[2001:db8::5]", "localhost",
                      "gw-1.example.org", "a", "x1.y2"])
    func acceptedHosts(_ host: String) {
        #expect(ConfigHost(host) != nil)
    }

    @Test(arguments: ["", " ", "127.0.0.1 ", "127.0.0.1\n", "a\nb", "a b", "\"a\"", "'a'", "a#b", "a;b", "a{b", "a}b", "a$b",
                      "a/b", "a\\b", "[::1", "::1]", "[]", "[127.0.0.1]", "999.1.1.1", "1.2.3", "-a", "a-", "a..b", ".a",
                      "::g", "[::1]:5", "a_b", "é.example", "unix", "UNIX", "Unix", "unix:5000"])
    func rejectedHosts(_ host: String) {
        #expect(ConfigHost(host) == nil)
    }

    @Test func endpointForms() {
        let v6 = ConfigEndpoint(ProxyEndpoint(host: "::1", port: 5100))
        #expect(v6?.description == "[::1]:5100")
        #expect(v6?.stunnelForm == "::1:5100")
        let bracketed = ConfigEndpoint(ProxyEndpoint(host: "[::1]", port: 5100))
        #expect(bracketed == v6)
        #expect(ConfigEndpoint(ProxyEndpoint(host: "127.0.0.1", port: 0)) == nil)
        #expect(ProxyEndpoint(host: "::1", port: 5100).description == "[::1]:5100")
        #expect(ProxyEndpoint(host: "10.0.0.1", port: 5100).description == "10.0.0.1:5100")
    }

    @Test func sessionIDs() {
        let id = SessionID(Self.uid.uppercased())
        #expect(id?.text == Self.uid)
        #expect(id?.prefix == "4f8583bc")
        #expect(id?.bytes.count == 16)
        #expect(id?.bytes.first == 0x4f)
        for bad in ["", Self.uid + " ", " " + Self.uid, String(Self.uid.dropLast()) + "g", Self.uid.replacingAll("-", with: "_"),
                    "../4f8583bc-a4d3-11ee-9fd6-034d1fcbd7"] {
            #expect(SessionID(bad) == nil)
        }
    }

    @Test func listenerIForwardsToTargetIModuloCount() throws {
        let listeners = (0..<5).map { ProxyEndpoint(host: "127.0.0.1", port: UInt16(5100 + $0)) }
        let targets = (0..<2).map { ProxyEndpoint(host: "10.0.0.\($0 + 1)", port: 5001) }
        let plan = try plan(.prod, listeners: listeners, targets: targets)
        #expect(plan.routes.map { $0.target.description } == ["10.0.0.1:5001", "10.0.0.2:5001", "10.0.0.1:5001", "10.0.0.2:5001", "10.0.0.1:5001"])
        #expect(plan.workers == 2)
        #expect(try self.plan(.prod).workers == 1)
    }

    @Test func haproxyServerSide() throws {
        let config = ProxyConfig.haproxy(try plan(.prod))
        #expect(config.contains("    bind 127.0.0.1:5100 ssl crt /home/u/.scistream/\(Self.uid).pem ca-file /home/u/.scistream/\(Self.uid).pem verify required ssl-min-ver TLSv1.3 "))
        #expect(config.contains("    server s0 127.0.0.1:5001\n"))
        // HAProxy 2.6 bounds the TLS handshake by `timeout client`; `timeout tunnel` keeps idle streams.
        #expect(config.contains("timeout client 10s\n"))
        #expect(config.contains("timeout tunnel 3600s\n"))
        #expect(config.contains("timeout server 3600s"))
        #expect(config.contains("    maxconn 512\n"))
        // Its unused HTTP client trusts the session's certificate, not the system's CA store.
        #expect(config.contains("    httpclient.ssl.ca-file /home/u/.scistream/\(Self.uid).pem\n"))
        // No shared TLS session cache (4.7 MiB zeroed at every start and held by the session).
        #expect(config.contains("    tune.ssl.cachesize 0\n"))
        #expect(!config.contains("verify none"))
        #expect(!config.contains("TLSv1.2") && !config.contains(" ciphers "))
        #expect(config.contains("ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"))
        #expect(!config.contains("splice"))
        #expect(!config.lowercased().contains("null"))
    }

    @Test func haproxyClientSide() throws {
        let config = ProxyConfig.haproxy(try plan(.cons, targets: [ProxyEndpoint(host: "::1", port: 5100)]))
        #expect(config.contains("    bind 127.0.0.1:5100\n"))
        #expect(config.contains("    server s0 [::1]:5100 ssl crt /home/u/.scistream/\(Self.uid).pem ca-file /home/u/.scistream/\(Self.uid).pem verify required "))
        #expect(config.contains(" verifyhost scistream-s2ds sni str(scistream-s2ds)\n"))
    }

    @Test func haproxyPlaintext() throws {
        let config = ProxyConfig.haproxy(try plan(.cons, tls: false))
        #expect(config.contains("option splice-request"))
        #expect(config.contains("option splice-response"))
        #expect(!config.contains(" ssl "))
        // No certificate to point its unused HTTP client at: the client verifies nothing, and
        // HAProxy does not load the system's CA store.
        #expect(config.contains("    httpclient.ssl.verify none\n"))
        #expect(!config.contains("ca-file") && !config.contains("cachesize"))
    }

    @Test func nginxServerSide() throws {
        let config = ProxyConfig.nginx(try plan(.prod, rate: 10000))
        #expect(config.hasPrefix("# SciStream S2DS, session 4f8583bc (PROD)"))
        #expect(config.contains("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"))
        #expect(config.contains("daemon off;\n"))
        // nginx's own pid file; <uid>.pid has one writer, s2cs. The log goes to stderr (s2cs's capture).
        #expect(config.contains("pid /home/u/.scistream/\(Self.uid).nginx.pid;\n"))
        #expect(config.contains("error_log stderr info;\n"))
        #expect(config.contains("ssl_protocols TLSv1.3;\n"))
        #expect(config.contains("ssl_handshake_timeout 10s;\n"))
        #expect(config.contains("limit_conn session 512;\n"))
        #expect(!config.contains("TLSv1.2") && !config.contains("ssl_ciphers"))
        #expect(config.contains("proxy_upload_rate 1250000;"))  // 10000 kb/s = 1,250,000 bytes/s
        #expect(config.contains("proxy_download_rate 1250000;"))
        #expect(config.contains("proxy_timeout 3600s;"))
        #expect(config.contains("proxy_half_close on;"))
        #expect(config.contains("ssl_verify_client on;"))
        #expect(config.contains("ssl_client_certificate /home/u/.scistream/\(Self.uid).pem;"))
        #expect(config.contains("ssl_certificate_key /home/u/.scistream/\(Self.uid).key;"))
        #expect(config.contains("        listen 127.0.0.1:5100 ssl;\n        proxy_pass 127.0.0.1:5001;\n"))
        #expect(!config.contains("proxy_ssl"))
    }

    @Test func nginxClientSide() throws {
        let config = ProxyConfig.nginx(try plan(.cons))
        #expect(config.contains("proxy_ssl on;"))
        #expect(config.contains("proxy_ssl_verify on;"))
        #expect(config.contains("proxy_ssl_name scistream-s2ds;"))
        #expect(config.contains("proxy_ssl_trusted_certificate /home/u/.scistream/\(Self.uid).pem;"))
        #expect(config.contains("proxy_ssl_protocols TLSv1.3;\n"))
        #expect(!config.contains("TLSv1.2"))
        #expect(config.contains("        listen 127.0.0.1:5100;\n"))
        #expect(!config.contains("proxy_upload_rate"))  // rate 0 = unlimited
        #expect(!config.contains("ssl_verify_client"))
    }

    @Test func nginxPlaintext() throws {
        let config = ProxyConfig.nginx(try plan(.prod, tls: false))
        #expect(!config.contains("ssl"))
        #expect(config.contains("        listen 127.0.0.1:5100;\n"))
    }

    @Test func stunnelSides() throws {
        let server = ProxyConfig.stunnel(try plan(.prod, listeners: [ProxyEndpoint(host: "[::1]", port: 5100)]))
        #expect(server.contains("foreground = yes\n"))
        #expect(server.contains("\npid =\n"))  // stunnel writes no pid file: s2cs is <uid>.pid's only writer
        #expect(server.contains("sslVersionMin = TLSv1.3\n"))
        #expect(server.contains("TIMEOUTbusy = 10\n"))
        #expect(!server.contains("TLSv1.2") && !server.contains("\nciphers ="))
        #expect(server.contains("accept = ::1:5100\n"))
        #expect(server.contains("verifyChain = yes\n"))
        #expect(server.contains("requireCert = yes\n"))
        #expect(server.contains("TIMEOUTidle = 3600\n"))
        #expect(!server.contains("client = yes"))
        let client = ProxyConfig.stunnel(try plan(.cons))
        #expect(client.contains("client = yes\n"))
        #expect(client.contains("checkHost = scistream-s2ds\n"))
        // No inline comments: the only ';' starts the first line.
        for config in [server, client] {
            let lines = config.split(separator: "\n")
            #expect(lines.dropFirst().allSatisfy { !$0.contains(";") && !$0.contains("#") })
        }
    }

    /// stunnel's client limit is `fds * 125 / 256` (from 256 descriptors; `(fds - 6) / 2` below):
    /// the descriptor limit s2cs gives it makes that exactly the session's cap.
    @Test func stunnelDescriptorLimitGivesTheCap() {
        func allowed(_ fds: Int) -> Int { fds >= 256 ? fds * 125 / 256 : (fds - 6) / 2 }
        #expect(SessionLimits.stunnelFileLimit(forClients: 512) == 1049)
        for clients in [5, 6, 100, 124, 125, 126, 256, 512, 1000, 4096] {
            let fds = SessionLimits.stunnelFileLimit(forClients: clients)
            #expect(allowed(fds) == clients, "\(clients) clients: \(fds) descriptors allow \(allowed(fds))")
            #expect(fds == 16 || allowed(fds - 1) < clients, "\(clients): \(fds) is not the smallest")
        }
    }

    @Test func configsNeverContainOutsideText() throws {
        // Whatever the role and mode, every line of every config is made of known pieces: no
        // character outside the validated alphabets and the configs' own syntax.
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .:-_/[](){};=,#@+%\n")
        for role in [ProxyRole.prod, .cons] {
            for tls in [true, false] {
                let plan = try plan(role, tls: tls, listeners: [ProxyEndpoint(host: "::1", port: 1), ProxyEndpoint(host: "gw.example.org", port: 65535)])
                for type in [DataServerType.haproxy, .nginx, .stunnel] {
                    let config = ProxyConfig.render(plan, for: type)
                    #expect(config.allSatisfy { allowed.contains($0) }, "\(type) \(role) tls=\(tls)")
                }
            }
        }
    }

    @Test func proxyBufferSizes() throws {
        #expect(ProxyBuffers.standard.bytes == 65536)
        #expect(ProxyBuffers(parsing: "64k") == .standard)
        #expect(ProxyBuffers(parsing: "64K") == .standard)
        #expect(ProxyBuffers(parsing: "64") == .standard)
        #expect(ProxyBuffers(parsing: "DEFAULT") == .proxyDefaults)
        #expect(ProxyBuffers(parsing: "4k")?.bytes == 4096)
        #expect(ProxyBuffers(parsing: "256k")?.bytes == 262_144)
        #expect(ProxyBuffers.standard.description == "64k")
        #expect(ProxyBuffers.proxyDefaults.description == "default")
        for bad in ["", "k", "3k", "257k", "1024k", "0", "-64k", "64kb", "64m", "65536b", " 64k", "64k ", "1e2", "00000064", "６４k", "+64"] {
            #expect(ProxyBuffers(parsing: bad) == nil, "\(bad)")
        }
    }

    @Test func buffersInConfigs() throws {
        // The chosen size by default, in both roles and both modes; nothing with 'default'.
        for role in [ProxyRole.prod, .cons] {
            for tls in [true, false] {
                // In HAProxy's global section, in nginx's stream block (before its servers).
                let haproxy = ProxyConfig.haproxy(try plan(role, tls: tls))
                let global = try #require(haproxy.firstRange(of: "\nglobal\n").map { haproxy[$0.upperBound...] }?.split(separator: "\n\n").first)
                #expect(global.split(separator: "\n").contains("    tune.bufsize 65536"), "\(haproxy)")
                let nginx = ProxyConfig.nginx(try plan(role, tls: tls))
                let stream = try #require(nginx.firstRange(of: "\nstream {\n").map { nginx[$0.upperBound...] }?.split(separator: "\n\n").first)
                #expect(stream.split(separator: "\n").contains("    proxy_buffer_size 64k;"), "\(nginx)")
                let stunnel = tls ? ProxyConfig.stunnel(try plan(role, tls: tls)) : ""
                #expect(!stunnel.lowercased().contains("buf"))
            }
        }
        let small = try plan(.cons, buffers: try #require(ProxyBuffers(parsing: "16k")))
        #expect(ProxyConfig.haproxy(small).contains("    tune.bufsize 16384\n"))
        #expect(ProxyConfig.nginx(small).contains("    proxy_buffer_size 16k;\n"))
        let defaults = try plan(.prod, buffers: .proxyDefaults)
        #expect(!ProxyConfig.haproxy(defaults).contains("tune.bufsize"))
        #expect(!ProxyConfig.nginx(defaults).contains("proxy_buffer_size"))
    }

    @Test func haproxyStatsSocketOnlyWhereHAProxyCanBindIt() throws {
        // HAProxy refuses a stats socket path over 97 bytes ("too long (max 97)") and then refuses to
        // start: the path is <folder>/<uid>.sock, 42 bytes after the folder.
        for (length, counted) in [(55, true), (56, false)] {
            let folder = "/" + String(repeating: "f", count: length - 1)
            var plan = try SessionPlan(ProxySpec(uid: Self.uid, role: .prod, listeners: [ProxyEndpoint(host: "127.0.0.1", port: 5100)],
                                                 targets: [ProxyEndpoint(host: "127.0.0.1", port: 5001)], rateKbps: 0),
                                       tls: true, folder: folder, processors: 2)
            plan.counting = true
            #expect(ProxyConfig.haproxy(plan).contains("    stats socket ") == counted, "folder of \(length) bytes")
        }
    }

    @Test func rateValidation() throws {
        #expect(throws: DataPlaneError.self) { try plan(.cons, rate: -5) }
        #expect(throws: DataPlaneError.self) { try plan(.cons, rate: SessionPlan.maximumRateKbps + 1) }
        #expect(try plan(.cons, rate: 8).rateBytesPerSecond == 1000)
    }

    @Test func haproxyErrorLines() {
        let log = """
        [NOTICE]   (6098) : haproxy version is 2.6.12-1+deb12u4
        [ALERT]    (6098) : Binding [/f/\(Self.uid).conf:12] for proxy l0: cannot bind socket (Address already in use) for [127.0.0.1:41100]
        [ALERT]    (6098) : [haproxy.main()] Some protocols failed to start their listeners! Exiting.
        """
        let summary = ProxyLog.errorSummary(log, type: .haproxy)
        #expect(summary == "[ALERT] Binding [/f/\(Self.uid).conf:12] for proxy l0: cannot bind socket (Address already in use) for [127.0.0.1:41100]; [ALERT] [haproxy.main()] Some protocols failed to start their listeners! Exiting.")
        let files = SessionFiles(folder: "/f", session: SessionID(Self.uid)!)
        #expect(files.redact(summary).contains("/f/4f8583bc*.conf:12"))
        #expect(!files.redact(summary).contains(Self.uid))
    }

    @Test func nginxErrorLines() {
        let log = """
        nginx: [emerg] bind() to 127.0.0.1:41100 failed (98: Address already in use)
        2026/11/22 00:20:57 [emerg] 6546#6546: bind() to 127.0.0.1:41100 failed (98: Address already in use)
        2026/11/22 00:20:57 [notice] 6546#6546: try again to bind() after 500ms
        2026/11/22 00:20:57 [crit] 6214#6214: *8 SSL_shutdown() failed (SSL: error:0A000123)
        nginx: [emerg] still could not bind()
        """
        #expect(ProxyLog.errorSummary(log, type: .nginx)
            == "[emerg] bind() to 127.0.0.1:41100 failed (98: Address already in use); [emerg] still could not bind()")
    }

    @Test func stunnelErrorLines() {
        let log = """
        [ ] Binding service [l0]
        [.] Binding service [l0] to 127.0.0.1:41100: Address already in use (98)
        [!] Binding service [l0] failed
        2026.11.22 00:20:52 LOG3[3]: SSL_accept: peer did not return a certificate
        """
        #expect(ProxyLog.errorSummary(log, type: .stunnel)
            == "Binding service [l0] to 127.0.0.1:41100: Address already in use (98); Binding service [l0] failed; SSL_accept: peer did not return a certificate")
        #expect(ProxyLog.errorSummary("one\ntwo\nthree\nfour\n", type: .stunnel) == "two; three; four")
    }

    @Test func errorsNameSessionsByPrefix() {
        let errors: [DataPlaneError] = [
            .startFailed(type: .haproxy, session: "4f8583bc", message: "[ALERT] x"),
            .notReady(type: .nginx, session: "4f8583bc", listener: "127.0.0.1:5100", seconds: 10),
            .listenerUnavailable(session: "4f8583bc", listener: "127.0.0.1:5100", reason: "Address already in use"),
        ]
        #expect(errors.map(\.description) == [
            "haproxy failed to start for session 4f8583bc: [ALERT] x",
            "nginx did not listen on 127.0.0.1:5100 within 10 s for session 4f8583bc",
            "cannot listen on 127.0.0.1:5100 for session 4f8583bc: Address already in use",
        ])
    }

    @Test func proxyCommandLineRecognition() {
        let config = "/home/u/.scistream/\(Self.uid).conf"
        #expect(DataPlane.isProxy(["/usr/sbin/haproxy", "-W", "-db", "-f", config, "-p", "x.pid"], using: config))
        #expect(DataPlane.isProxy(["nginx: master process /usr/sbin/nginx -c \(config) -e x.log"], using: config))
        #expect(DataPlane.isProxy(["/usr/bin/stunnel", config], using: config))
        #expect(!DataPlane.isProxy(["/usr/bin/stunnel", config + ".old"], using: config))
        #expect(!DataPlane.isProxy(["/usr/sbin/haproxy", "-f", "/other.conf"], using: config))
        #expect(!DataPlane.isProxy(["/usr/bin/vim", config], using: config))
        #expect(!DataPlane.isProxy([], using: config))
    }
}
