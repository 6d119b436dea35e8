import SciStreamWire

/// A session's proxy, fully validated: the only input the config renderers accept.
struct SessionPlan: Sendable {
    let session: SessionID
    let role: ProxyRole
    /// (listener, target) pairs: listener i forwards to target i % targets.count.
    let routes: [(listener: ConfigEndpoint, target: ConfigEndpoint)]
    /// Per-connection rate in kb/s; 0 = unlimited.
    let rateKbps: Int
    let tls: Bool
    let files: SessionFiles
    /// nginx worker processes: one per listener, at most one per CPU.
    let workers: Int
    /// HAProxy threads: one per CPU (HAProxy's own default), whatever the number of listeners: the
    /// connections of one listener are spread over all threads, and a session's application may
    /// open several connections to one listener (iperf3 -P 4 through --num_conn 1 ran at 0.85 of
    /// the hand-configured pair with one thread, 1.00 with two).
    let threads: Int
    /// Who the proxy drops to once it has read its files and bound its listeners (s2cs runs as root).
    var runAs: ProxyIdentity? = nil
    /// The most connections the session's proxy holds at once, over all its listeners (those still
    /// in their TLS handshake count): HAProxy `maxconn`, nginx `limit_conn`, stunnel's client limit.
    let maxConnections: Int
    /// Per-connection buffer size (HAProxy and nginx).
    let buffers: ProxyBuffers
    /// Whether the proxy counts the session's traffic where s2cs can read it (a stats socket, an access log).
    var counting = false
    /// Listen for UDP too (`listen ... udp`): Nginx, plaintext hop only (checked by DataPlane.start).
    var udp = false

    static let maximumRateKbps = 1_000_000_000  // 1 Tbit/s
    /// Sources the listeners accept; empty: any.
    let allowedSources: [SourceBlock]

    /// Validates `spec` (again: every value that reaches a config). Nothing is written on failure.
    init(_ spec: ProxySpec, tls: Bool, folder: String, processors: Int, buffers: ProxyBuffers = .standard,
         maxConnections: Int = SessionLimits.defaultMaxConnections) throws(DataPlaneError) {
        let session = spec.uid
        let name = session.prefix
        guard !spec.listeners.isEmpty else { throw .invalidSpec(session: name, reason: "no listeners") }
        guard !spec.targets.isEmpty else { throw .invalidSpec(session: name, reason: "no targets to forward to") }
        guard spec.listeners.count <= 1024, spec.targets.count <= 1024 else {
            throw .invalidSpec(session: name, reason: "too many listeners or targets (at most 1024)")
        }
        var listeners: [ConfigEndpoint] = []
        for endpoint in spec.listeners {
            guard let valid = ConfigEndpoint(endpoint) else {
                throw .invalidSpec(session: name, reason: "invalid listener '\(printable(endpoint.host)):\(endpoint.port)' "
                    + "(a host is letters, digits, '.', '-', ':' or a bracketed IPv6 address; a port is 1-65535)")
            }
            guard !listeners.contains(valid) else {
                throw .invalidSpec(session: name, reason: "listener \(valid) appears twice")
            }
            listeners.append(valid)
        }
        var targets: [ConfigEndpoint] = []
        for endpoint in spec.targets {
            guard let valid = ConfigEndpoint(endpoint) else {
                throw .invalidSpec(session: name, reason: "invalid target '\(printable(endpoint.host)):\(endpoint.port)' "
                    + "(a host is letters, digits, '.', '-', ':' or a bracketed IPv6 address; a port is 1-65535)")
            }
            targets.append(valid)
        }
        guard spec.rateKbps >= 0, spec.rateKbps <= Self.maximumRateKbps else {
            throw .invalidSpec(session: name, reason: "rate \(spec.rateKbps) kb/s is out of range (0 = unlimited, at most \(Self.maximumRateKbps))")
        }
        // Each block is valid by construction (SourceBlock): only their number is checked here.
        guard spec.allowedSources.count <= 256 else { throw .invalidSpec(session: name, reason: "too many allowed sources (at most 256)") }
        self.allowedSources = spec.allowedSources
        guard isConfigSafePath(folder) else {
            throw .folder(path: printable(folder, limit: 200), reason: "the path has characters that cannot appear in a proxy config")
        }
        self.session = session
        self.role = spec.role
        self.routes = listeners.enumerated().map { (index, listener) in (listener, targets[index % targets.count]) }
        self.rateKbps = spec.rateKbps
        self.tls = tls
        self.files = SessionFiles(folder: folder, session: session)
        self.workers = max(1, min(processors, listeners.count, 64))
        self.threads = max(1, min(processors, 64))
        self.maxConnections = max(SessionLimits.minimumMaxConnections, maxConnections)
        self.buffers = buffers
    }

    /// kb/s to bytes/s for nginx: × 1000 / 8.
    var rateBytesPerSecond: Int { rateKbps * 1000 / 8 }
}

/// The TLS parameters every proxy uses on the gateway-to-gateway hop: TLS 1.3 only, AES-GCM only
/// (never eNULL). Both gateways run our configs, so there is no older peer to accept.
enum TLSParameters {
    static let tls13Suites = "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
    /// Idle streams must not be cut: inactivity timeouts of one hour.
    static let idleSeconds = 3600
    static let connectSeconds = 10
}

extension SessionLimits {
    /// stunnel cannot count below 5 (it needs 16 descriptors: (16 - 6) / 2 clients).
    static let minimumMaxConnections = 5

    /// The RLIMIT_NOFILE that makes stunnel allow exactly `clients` connections: stunnel derives
    /// its client limit from it, `fds * 125 / 256` from 256 descriptors on, `(fds - 6) / 2` below.
    static func stunnelFileLimit(forClients clients: Int) -> Int {
        func allowed(_ fds: Int) -> Int { fds >= 256 ? fds * 125 / 256 : (fds - 6) / 2 }
        var fds = max(16, clients * 2 + 6)
        if fds >= 256 { fds = max(256, clients * 256 / 125) }
        while allowed(fds) < clients { fds += 1 }
        return fds
    }
}

/// Renders a config for one proxy type from a validated plan.
enum ProxyConfig {
    static func render(_ plan: SessionPlan, for type: DataServerType) -> String {
        switch type {
        case .haproxy: haproxy(plan)
        case .nginx: nginx(plan)
        case .stunnel: stunnel(plan)
        case .mock: ""
        }
    }

    /// `haproxy -W -db -f s2ds-<label>.conf` (no pid file: s2cs writes `<uid>.pid`).
    ///
    /// HAProxy 2.6 has no `timeout client-hs`: a connection still in its TLS handshake is bounded by
    /// `timeout client`, so that one is the handshake timeout, and `timeout tunnel` (which replaces
    /// the client and server timeouts once both sides are connected) keeps idle streams for an hour.
    static func haproxy(_ plan: SessionPlan) -> String {
        let files = plan.files
        var lines = [
            "# SciStream S2DS, session \(plan.session.prefix) (\(plan.role)), generated by s2cs: do not edit",
            "global",
            "    nbthread \(plan.threads)",
            "    maxconn \(plan.maxConnections)",
            "    ssl-load-extra-files none",
            // HAProxy's internal HTTP client (Lua, the expert-level CLI: neither is used) loads the
            // system's whole CA store at every start by default: 20-25 ms of a 37 ms start, paid by
            // every session. Pointed at the session's own certificate instead (a session without TLS
            // has none: the client's verification is off, and nothing can use the client).
            plan.tls ? "    httpclient.ssl.ca-file \(files.certificate)" : "    httpclient.ssl.verify none",
            "    log stderr format raw local0 info",
        ] + (plan.tls ? [
            // No shared TLS session cache: by default a 4.7 MiB shared mapping that HAProxy zeroes
            // at every start (20,000 blocks) and keeps for the session's life, outside every
            // process's PSS. A tunnel's connections are few and long-lived: a full handshake for
            // each costs little.
            "    tune.ssl.cachesize 0",
        ] : []) + plan.buffers.haproxyGlobal
            + (plan.runAs.map { ["    user \($0.user)", "    group \($0.group)"] } ?? [])  // its workers drop to it
        // A unix socket path is at most 107 bytes, and HAProxy binds through a temporary name 10 bytes
        // longer ("too long (max 97)"): a folder too deep to hold one goes uncounted.
        if plan.counting && files.statsSocket.utf8.count <= 97 {
            lines.append("    stats socket \(files.statsSocket) mode 600 level user")
        }
        lines += [
            "",
            "defaults",
            "    mode tcp",
            "    log global",
            "    option tcplog",
            "    timeout connect \(TLSParameters.connectSeconds)s",
            "    timeout client \(SessionLimits.handshakeSeconds)s",
            "    timeout tunnel \(TLSParameters.idleSeconds)s",
            "    timeout server \(TLSParameters.idleSeconds)s",
            "    timeout client-fin \(TLSParameters.idleSeconds)s",
            "    timeout server-fin \(TLSParameters.idleSeconds)s",
        ]
        if !plan.tls {
            lines += ["    option splice-request", "    option splice-response"]
        }
        let tlsCommon = "ssl crt \(files.certificate) ca-file \(files.certificate) verify required "
            + "ssl-min-ver TLSv1.3 ciphersuites \(TLSParameters.tls13Suites)"
        for (index, route) in plan.routes.enumerated() {
            lines.append("")
            lines.append("listen l\(index)")
            if plan.tls && plan.role == .prod {
                lines.append("    bind \(route.listener) \(tlsCommon)")
            } else {
                lines.append("    bind \(route.listener)")
            }
            if !plan.allowedSources.isEmpty {
                // Refused before anything is read or forwarded: the connection is closed at once.
                lines.append("    acl allowed_source src \(plan.allowedSources.map(\.description).joined(separator: " "))")
                lines.append("    tcp-request connection reject unless allowed_source")
            }
            if plan.tls && plan.role == .cons {
                lines.append("    server s\(index) \(route.target) \(tlsCommon) verifyhost \(SessionKeys.peerName) sni str(\(SessionKeys.peerName))")
            } else {
                lines.append("    server s\(index) \(route.target)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static let nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

    /// `nginx -c s2ds-<label>.conf -e stderr`. nginx must write a pid file: its own,
    /// `<uid>.nginx.pid` (s2cs writes `<uid>.pid`; no file has two writers). Its log goes to stderr,
    /// which s2cs captures into `<uid>.log`.
    static func nginx(_ plan: SessionPlan) -> String {
        let files = plan.files
        // Each proxied connection takes two of a worker's connections (client and upstream).
        let workerConnections = max(1024, plan.maxConnections * 2 + plan.routes.count + 32)
        var lines = [
            "# SciStream S2DS, session \(plan.session.prefix) (\(plan.role)), generated by s2cs: do not edit",
            "load_module \(nginxStreamModule);",
            "daemon off;",
            "master_process on;",
        ] + (plan.runAs.map { ["user \($0.user) \($0.group);"] } ?? []) + [  // its workers drop to it
            "worker_processes \(plan.workers);",
            "pid \(files.nginxPID);",
            "error_log stderr info;",
            "",
            "events {",
            "    worker_connections \(workerConnections);",
            "}",
            "",
            "stream {",
            "    proxy_timeout \(TLSParameters.idleSeconds)s;",
            // Without it, a client's half-close (shutdown SHUT_WR) ends the session at once and the
            // bytes still in nginx's buffer are lost (seen: 112 KiB of 1 MiB arrived).
            "    proxy_half_close on;",
            "    proxy_connect_timeout \(TLSParameters.connectSeconds)s;",
            // One zone and one constant key: the cap counts every connection of the session.
            "    limit_conn_zone s2ds zone=session:64k;",
            "    limit_conn session \(plan.maxConnections);",
            "    limit_conn_log_level warn;",
        ] + plan.buffers.nginxStream
        if plan.counting {
            lines += [
                // The only '$' in any config: nginx's variables, in a constant line. The access log
                // goes to stderr, the pipe s2cs reads into <uid>.log, so that it is bounded too (a
                // stranger's refused connection is a line of it).
                "    log_format scistream_traffic $bytes_received,$bytes_sent;",
                "    access_log /dev/stderr scistream_traffic;",
            ]
        }
        if plan.rateKbps > 0 {
            lines += [
                "    proxy_upload_rate \(plan.rateBytesPerSecond);",
                "    proxy_download_rate \(plan.rateBytesPerSecond);",
            ]
        }
        if plan.tls && plan.role == .prod {
            lines += [
                "    ssl_certificate \(files.certificate);",
                "    ssl_certificate_key \(files.key);",
                "    ssl_client_certificate \(files.certificate);",
                "    ssl_verify_client on;",
                "    ssl_verify_depth 1;",
                "    ssl_protocols TLSv1.3;",
                "    ssl_conf_command Ciphersuites \(TLSParameters.tls13Suites);",
                "    ssl_handshake_timeout \(SessionLimits.handshakeSeconds)s;",
            ]
        }
        if plan.tls && plan.role == .cons {
            lines += [
                "    proxy_ssl on;",
                "    proxy_ssl_certificate \(files.certificate);",
                "    proxy_ssl_certificate_key \(files.key);",
                "    proxy_ssl_trusted_certificate \(files.certificate);",
                "    proxy_ssl_verify on;",
                "    proxy_ssl_verify_depth 1;",
                "    proxy_ssl_name \(SessionKeys.peerName);",
                "    proxy_ssl_server_name on;",
                "    proxy_ssl_protocols TLSv1.3;",
                "    proxy_ssl_conf_command Ciphersuites \(TLSParameters.tls13Suites);",
            ]
        }
        for route in plan.routes {
            let ssl = plan.tls && plan.role == .prod ? " ssl" : ""
            lines += [
                "",
                "    server {",
                "        listen \(route.listener)\(ssl);",
            ]
            if plan.udp { lines.append("        listen \(route.listener) udp;") }
            lines += [
                "        proxy_pass \(route.target);",
            ]
            if !plan.allowedSources.isEmpty {
                lines += plan.allowedSources.map { "        allow \($0);" } + ["        deny all;"]
            }
            lines.append("    }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// `stunnel s2ds-<label>.conf`. No inline comments (stunnel would take them as part of the value).
    /// Logs go to stderr (the session log): `output` would duplicate every line there. `pid =` with
    /// no value: stunnel writes no pid file (s2cs writes `<uid>.pid`; when both did, stunnel's
    /// exclusive create lost to s2cs's rename now and then, and it exited after it had bound its
    /// listeners). Its connection cap is its client limit, set through RLIMIT_NOFILE at spawn.
    static func stunnel(_ plan: SessionPlan) -> String {
        let files = plan.files
        var lines = [
            "; SciStream S2DS, session \(plan.session.prefix) (\(plan.role)), generated by s2cs: do not edit",
            "foreground = yes",
            "syslog = no",
            "pid =",
            "debug = notice",
        ] + (plan.runAs.map { ["setuid = \($0.user)", "setgid = \($0.group)"] } ?? [])
        for (index, route) in plan.routes.enumerated() {
            lines += [
                "",
                "[l\(index)]",
                "accept = \(route.listener.stunnelForm)",
                "connect = \(route.target.stunnelForm)",
                "TIMEOUTidle = \(TLSParameters.idleSeconds)",
                "TIMEOUTconnect = \(TLSParameters.connectSeconds)",
                "TIMEOUTbusy = \(SessionLimits.handshakeSeconds)",
                "cert = \(files.certificate)",
                "key = \(files.key)",
                "CAfile = \(files.certificate)",
                "verifyChain = yes",
                "sslVersionMin = TLSv1.3",
                "ciphersuites = \(TLSParameters.tls13Suites)",
            ]
            if plan.role == .prod {
                lines.append("requireCert = yes")
            } else {
                lines += [
                    "client = yes",
                    "checkHost = \(SessionKeys.peerName)",
                    "sni = \(SessionKeys.peerName)",
                ]
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
