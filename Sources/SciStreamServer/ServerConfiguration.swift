import Foundation
import SciStreamWire
import SciStreamDataPlane
import SciStreamSystem
import SciStreamCommandLine
import SciStreamPolicy

/// Everything `s2cs` was told on its command line, validated.
public struct ServerConfiguration: Sendable, Equatable {
    public var listenerIP: String = "0.0.0.0"
    /// `--prod-listener-ip`, `--cons-listener-ip`: where PROD (peer-facing) and CONS
    /// (application-facing) listeners bind, when not `listenerIP`; see ServerConfiguration+Deploy.swift.
    public var prodListenerIP: String? = nil
    public var consListenerIP: String? = nil
    /// `--advertise-ip`: the address clients are told for PROD listeners, when not their bind address
    /// (behind NAT, a port mapping or a Kubernetes service).
    public var advertiseIP: String? = nil
    public var port: UInt16 = 5000
    public var bindAddress: String = "0.0.0.0"
    public var portRange = PortRange.scistreamDefault
    public var type: DataServerType = .haproxy
    public var verbose = false
    public var clientID: String? = nil
    public var clientSecret: String? = nil
    /// Globus Auth's base URL from `GLOBUS_SDK_SERVICE_URL_AUTH` (nil: https://auth.globus.org).
    public var authServiceURL: String? = nil
    public var serverCertificate = "server.crt"
    public var serverKey = "server.key"
    public var tls = true
    public var dataPlaneTLS = true
    public var proxyBuffers = ProxyBuffers.standard
    public var helloTimeout: Duration = .seconds(180)
    public var maxConnections = 4096
    public var maxSessionsPerClient = 1000
    /// How long one frame (or a TLS handshake) may take to arrive once begun: a slow or silent peer is cut off.
    public var frameTimeout: Duration = .seconds(10)
    /// Set by `parse` from `--config-folder`, else the environment it is given (`$HAPROXY_CONFIG_PATH`,
    /// else `~/.scistream`).
    public var configFolder = ""
    /// Neither `--config-folder` nor `$HAPROXY_CONFIG_PATH` was given: `configFolder` is `~/.scistream`,
    /// and session files go to a subfolder per control port (`sessionFolder(controlPort:)`).
    public var configFolderIsDefault = false
    /// The PATH of the environment s2cs was started with: where proxies are looked for (with the
    /// standard directories), read at the edge and passed in.
    public var searchPATH: String? = nil
    /// `--proxy-user`: who proxies drop to when s2cs runs as root (nil: `nobody`); see ServerConfiguration+Deploy.swift.
    public var proxyUser: String? = nil
    /// `--allowed-targets`: where sessions may forward (nil: the default policy, see TargetPolicy).
    var allowedTargets: [AddressRule]? = nil
    /// `--allowed-identities`: Globus usernames (or `*@domain`) that may use this s2cs (nil: any).
    public var allowedIdentities: [String]? = nil
    /// `--admin-identities`: Globus usernames (or `*@domain`) that may list every session with its
    /// owner and release any (nil: nobody over the network).
    public var adminIdentities: [String]? = nil
    /// `--admin-socket`: the local admin channel's Unix socket; nil: `admin.sock` in the session
    /// folder; `none`: no admin channel.
    public var adminSocket: String? = nil
    /// `--peer-gateways`: with `--data-plane-tls=False`, the only sources producer-side listeners accept.
    var peerGateways: [AddressRule]? = nil
    /// `--cons-allowed-sources`: the only sources consumer-side listeners accept (nil: loopback and
    /// each session's requester; see ConsumerSources).
    var consAllowedSources: [AddressRule]? = nil
    /// `KUBERNETES_SERVICE_HOST` from the environment s2cs was started with (numeric): the Kubernetes
    /// API service of the pod it runs in, which the default target policy refuses.
    var kubernetesServiceHost: IPAddress? = nil
    /// `--max-ports-per-client`: listener ports one client (address, and identity) may hold at once.
    public var maxPortsPerClient: Int? = nil
    /// `--max-connections-per-client`: control connections one client address may hold at once.
    public var maxConnectionsPerClient = 512
    /// `--max-pending-ports`: listener ports that requests still waiting for their hello may hold
    /// together, over every client (nil: half of `--port-range`).
    public var maxPendingPorts: Int? = nil
    /// `--metrics`: where the Prometheus page is served (nil: not served); see the SciStreamMetrics module and docs/metrics.md.
    public var metrics: Endpoint? = nil
    /// `--keep-sessions-on-exit`: on SIGTERM/SIGINT, active sessions' proxies go on for the next
    /// s2cs to take over (a restart or upgrade keeps the streams); SIGQUIT still ends them.
    public var keepSessionsOnExit = false
    /// `--audit-log`: the audit log's file; nil: `audit.log` in the session folder; `none`: not written.
    public var auditLog: String? = nil
    /// `--traffic-counting`: proxies count each session's traffic for `list` and `--metrics`.
    public var trafficCounting = true
    /// `--max-session-lifetime`: a session this old (since its request) is ended as a release ends
    /// it (nil: no limit).
    public var maxSessionLifetime: Duration? = nil

    public init() {}

    public static let command = "s2cs"
    /// Every flag, as declared in `options`: the usage line cannot lack one.
    public static var usage: String { ArgumentParser.usageLine(command, every: options) }

    /// The values an empty command line gives: the struct's initial values above, declared once.
    /// Each option's default (what help shows, what parsing gives) is read from here.
    static let declared = ServerConfiguration()

    /// Every option, a constant each: values are read by these, never by a name in a string.
    enum Flag {
        static let listenerIP = OptionSpec("listener-ip", aliases: ["l"], value: "ip", default: declared.listenerIP, help: "Address the data-plane listeners bind to and that clients are told (unless the three options below say otherwise).")
        static let prodListenerIP = OptionSpec("prod-listener-ip", value: "ip", help: "Address producer-side (PROD, peer-facing) listeners bind to. Default: --listener-ip.")
        static let consListenerIP = OptionSpec("cons-listener-ip", value: "ip", help: "Address consumer-side (CONS, application-facing) listeners bind to. Default: --listener-ip.")
        static let advertiseIP = OptionSpec("advertise-ip", value: "host", help: "Address clients are told for PROD listeners when peers reach them through NAT or a port mapping (need not be local). Default: their bind address.")
        static let port = OptionSpec("port", value: "port", default: "\(declared.port)", help: "Control port (0 picks a free port and prints it).")
        static let bind = OptionSpec("bind", value: "ip", default: declared.bindAddress, help: "Address the control port binds to.")
        static let portRange = OptionSpec("port-range", value: "start-end", default: declared.portRange.description, help: "Ports handed out to session listeners.")
        static let type = OptionSpec("type", aliases: ["t"], value: "type", default: declared.type.name, help: "Data server: Haproxy, Nginx, Stunnel, HaproxySubprocess, StunnelSubprocess or Mock.")
        static let verbose = OptionSpec("verbose", aliases: ["v"], help: "Log every request (debug level).")
        static let clientId = OptionSpec("client-id", value: "id", help: "Globus Auth client id of this s2cs: users log in with 's2uc login --scope <id>'.")
        static let clientSecret = OptionSpec("client-secret", value: "secret", help: "Globus Auth client secret; with it every request's token is checked, without it authentication is off.")
        static let clientSecretFile = OptionSpec("client-secret-file", value: "file", help: "Read the client secret from this file (mode 0600 or stricter; keeps it out of 'ps'); instead of --client-secret.")
        static let serverCrt = OptionSpec("server_crt", value: "file", default: declared.serverCertificate, help: "TLS certificate of the control channel.")
        static let serverKey = OptionSpec("server_key", value: "file", default: declared.serverKey, help: "TLS private key of the control channel.")
        static let ssl = OptionSpec("ssl", value: "bool", default: ArgumentParser.text(declared.tls), help: "TLS on the control channel; False is for development only.")
        static let dataPlaneTls = OptionSpec("data-plane-tls", value: "bool", default: ArgumentParser.text(declared.dataPlaneTLS), help: "Encrypt the hop between gateways; False forwards plain TCP (trusted networks only).")
        static let proxyBufferSize = OptionSpec("proxy-buffer-size", value: "size", default: declared.proxyBuffers.description, help: "Buffer per connection and direction in HAProxy and Nginx: 4k to 256k, or 'default' for the proxy's own (16k).")
        static let helloTimeout = OptionSpec("hello-timeout", value: "seconds", default: ArgumentParser.seconds(declared.helloTimeout), help: "How long a request waits for its hello (env S2CS_HELLO_TIMEOUT).")
        static let maxConnections = OptionSpec("max-connections", value: "n", default: "\(declared.maxConnections)", help: "Most control connections served at once; more are answered RESOURCE_EXHAUSTED.")
        static let frameTimeout = OptionSpec("frame-timeout", value: "seconds", default: ArgumentParser.seconds(declared.frameTimeout), help: "How long a TLS handshake or one request frame may take to arrive.")
        static let maxSessionsPerClient = OptionSpec("max-sessions-per-client", value: "n", default: "\(declared.maxSessionsPerClient)", help: "Most sessions one client address may hold at once.")
        static let configFolder = OptionSpec("config-folder", value: "dir", help: "Where configs, keys, logs and pid files go, for this s2cs alone (default $HAPROXY_CONFIG_PATH, else ~/.scistream/s2cs-<control port>).")
        static let proxyUser = OptionSpec("proxy-user", value: "user", help: "When s2cs runs as root, the unprivileged user its proxies drop to (default: nobody).")
        static let allowedTargets = OptionSpec("allowed-targets", value: "cidrs", help: "Where sessions may forward: CIDR blocks, each optionally with :PORT or :PORT-PORT (IPv6 in brackets), comma-separated. Default: anywhere but loopback (unless --listener-ip is loopback), link-local and this gateway's own addresses.")
        static let allowedIdentities = OptionSpec("allowed-identities", value: "users", help: "With authentication on, the Globus usernames allowed to use this s2cs, comma-separated; *@domain allows a whole domain. Default: any identity whose token has the scope.")
        static let adminIdentities = OptionSpec("admin-identities", value: "users", help: "With authentication on, the Globus usernames (or *@domain) who may list every session with its owner and release any, comma-separated (or @FILE, read again on SIGHUP). Default: none.")
        static let adminSocket = OptionSpec("admin-socket", value: "path", help: "The local admin channel: a Unix socket (mode 0600) where s2uc list and s2uc release act on every session (s2uc --s2cs unix:PATH); 'none' opens none. Default: admin.sock in the config folder.")
        static let peerGateways = OptionSpec("peer-gateways", value: "cidrs", help: "With --data-plane-tls=False: the peer gateways' addresses, the only sources producer-side listeners accept (required for inbound sessions in that mode).")
        static let consAllowedSources = OptionSpec("cons-allowed-sources", value: "cidrs", help: "The only sources consumer-side (CONS) listeners accept: CIDR blocks, comma-separated (IPv6 as 2001:db8::/32). Default: 127.0.0.1, ::1 and the address that requested the session.")
        static let maxPortsPerClient = OptionSpec("max-ports-per-client", value: "n", help: "Most listener ports one client address (and one identity) may hold at once. Default: half of --port-range.")
        static let maxConnectionsPerClient = OptionSpec("max-connections-per-client", value: "n", default: "\(declared.maxConnectionsPerClient)", help: "Most control connections one client address may hold at once.")
        static let maxPendingPorts = OptionSpec("max-pending-ports", value: "n", help: "Most listener ports that requests still waiting for their hello may hold together, over every client; past it a request first releases pending sessions whose hello is 5 s late. Default: half of --port-range.")
        static let metrics = OptionSpec("metrics", value: "host:port", help: "Serve Prometheus metrics at http://<host:port>/metrics (a loopback address unless --metrics-allow-remote; off by default).")
        static let trafficCounting = OptionSpec("traffic-counting", value: "bool", default: ArgumentParser.text(declared.trafficCounting), help: "Have proxies count each session's connections and bytes (HAProxy stats socket, Nginx access log) for 's2uc list' and --metrics.")
        static let keepSessionsOnExit = OptionSpec("keep-sessions-on-exit", help: "On SIGTERM or SIGINT, leave active sessions' proxies running for the next s2cs on this folder to take over, and at start take over those an earlier s2cs left (restarts and upgrades keep the streams); SIGQUIT ends them. Default: every session ends with s2cs, and proxies left behind are stopped.")
        static let maxSessionLifetime = OptionSpec("max-session-lifetime", value: "duration", help: "End every session this long after it was requested, as a release would: 36h, 90m, 3600s or seconds. Default: no limit.")
        static let auditLog = OptionSpec("audit-log", value: "file", help: "Append one JSON line per decision (request, hello, update, release, list, refusal, expiry) to this file; 'none' writes none. Default: audit.log in the config folder.")
        static let metricsAllowRemote = OptionSpec("metrics-allow-remote", help: "Allow --metrics on an address that is not loopback (anyone who reaches it sees session figures).")
    }

    public static let options: [OptionSpec] = [
        Flag.listenerIP,
        Flag.prodListenerIP,
        Flag.consListenerIP,
        Flag.advertiseIP,
        Flag.port,
        Flag.bind,
        Flag.portRange,
        Flag.type,
        Flag.verbose,
        Flag.clientId,
        Flag.clientSecret,
        Flag.clientSecretFile,
        Flag.serverCrt,
        Flag.serverKey,
        Flag.ssl,
        Flag.dataPlaneTls,
        Flag.proxyBufferSize,
        Flag.helloTimeout,
        Flag.maxConnections,
        Flag.frameTimeout,
        Flag.maxSessionsPerClient,
        Flag.configFolder,
        Flag.proxyUser,
        Flag.allowedTargets,
        Flag.allowedIdentities,
        Flag.adminIdentities,
        Flag.adminSocket,
        Flag.peerGateways,
        Flag.consAllowedSources,
        Flag.maxPortsPerClient,
        Flag.maxConnectionsPerClient,
        Flag.maxPendingPorts,
        Flag.metrics,
        Flag.trafficCounting,
        Flag.keepSessionsOnExit,
        Flag.maxSessionLifetime,
        Flag.auditLog,
        Flag.metricsAllowRemote,
        OptionSpec.version,
    ]

    /// Parses and validates the command line. Throws `UsageError` for anything wrong.
    public static func parse(_ arguments: [String], environment: [String: String]) throws(UsageError) -> (ServerConfiguration, ParsedArguments) {
        let parsed = try ArgumentParser.parse(arguments, options: options + [OptionSpec.help], maxPositionals: 0)
        var config = ServerConfiguration()
        if parsed.isSet(OptionSpec.help) || parsed.isSet(OptionSpec.version) { return (config, parsed) }

        do {
            config.listenerIP = try Endpoint.validateHost(parsed.string(Flag.listenerIP))
            config.prodListenerIP = try parsed.value(Flag.prodListenerIP).map(Endpoint.validateHost)
            config.consListenerIP = try parsed.value(Flag.consListenerIP).map(Endpoint.validateHost)
            config.advertiseIP = try parsed.value(Flag.advertiseIP).map(Endpoint.validateHost)
            config.bindAddress = try Endpoint.validateHost(parsed.string(Flag.bind))
            config.portRange = try PortRange.parse(parsed.string(Flag.portRange))
        } catch {
            throw UsageError(error.description)
        }
        let portText = parsed.string(Flag.port)
        config.port = UInt16(try ArgumentParser.parseInt(portText, option: "port", range: 0...65535))

        let typeText = parsed.string(Flag.type)
        guard let type = DataServerType.parse(typeText) else {
            throw UsageError("unknown data server type '\(typeText)' for '--type': use Haproxy, Nginx, Stunnel, HaproxySubprocess, StunnelSubprocess or Mock")
        }
        config.type = type
        config.verbose = parsed.isSet(Flag.verbose)
        config.clientID = parsed.value(Flag.clientId)
        config.clientSecret = parsed.value(Flag.clientSecret)
        if let path = parsed.value(Flag.clientSecretFile) {
            config.clientSecret = try readClientSecretFile(path, alsoGiven: config.clientSecret != nil)
        }
        // Fail closed: an empty value (an unset shell variable) must not quietly turn authentication off.
        for (name, value) in [("--client-id", config.clientID), ("--client-secret", config.clientSecret)] {
            if let value, value.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }) {
                throw UsageError("\(name) is empty: give the Globus Auth \(name == "--client-id" ? "client id" : "client secret") of this s2cs, or leave both flags out to run without authentication")
            }
        }
        if config.clientSecret != nil, config.clientID == nil {
            throw UsageError("--client-secret needs --client-id: the client id names the scope tokens must carry")
        }

        config.authServiceURL = environment["GLOBUS_SDK_SERVICE_URL_AUTH"].flatMap { $0.isEmpty ? nil : $0 }
        config.serverCertificate = parsed.string(Flag.serverCrt)
        config.serverKey = parsed.string(Flag.serverKey)
        config.tls = try ArgumentParser.parseBool(parsed.string(Flag.ssl), option: "--ssl")
        config.dataPlaneTLS = try ArgumentParser.parseBool(parsed.string(Flag.dataPlaneTls), option: "--data-plane-tls")

        let bufferText = parsed.string(Flag.proxyBufferSize)
        guard let buffers = ProxyBuffers(parsing: bufferText) else {
            throw UsageError("'\(bufferText)' is not valid for '--proxy-buffer-size': use a size from \(ProxyBuffers.allowedKiB.lowerBound)k to \(ProxyBuffers.allowedKiB.upperBound)k, e.g. 64k, or 'default' for the proxy's own")
        }
        config.proxyBuffers = buffers

        let helloText = parsed.given(Flag.helloTimeout) ?? environment["S2CS_HELLO_TIMEOUT"] ?? parsed.string(Flag.helloTimeout)
        guard let helloSeconds = Double(helloText), helloSeconds > 0, helloSeconds <= 86_400 else {
            throw UsageError("'\(helloText)' is not valid for '--hello-timeout' (or S2CS_HELLO_TIMEOUT): use seconds from 0.001 to 86400")
        }
        config.helloTimeout = .milliseconds(Int64(helloSeconds * 1000))
        config.maxConnections = try ArgumentParser.parseInt(parsed.string(Flag.maxConnections), option: "max-connections", range: 1...1_000_000)
        config.maxSessionsPerClient = try ArgumentParser.parseInt(parsed.string(Flag.maxSessionsPerClient), option: "max-sessions-per-client", range: 1...1_000_000)
        let frameText = parsed.string(Flag.frameTimeout)
        guard let frameSeconds = Double(frameText), frameSeconds >= 0.1, frameSeconds <= 3600 else {
            throw UsageError("'\(frameText)' is not valid for '--frame-timeout': use seconds from 0.1 to 3600")
        }
        config.frameTimeout = .milliseconds(Int64(frameSeconds * 1000))
        config.proxyUser = parsed.value(Flag.proxyUser)
        if let text = try parsed.value(Flag.allowedTargets).map({ value throws(UsageError) in try listValue(value, option: "--allowed-targets") }) {
            do { config.allowedTargets = try AddressRule.parseList(text) } catch { throw UsageError("bad --allowed-targets: \(error)") }
        }
        if let text = try parsed.value(Flag.peerGateways).map({ value throws(UsageError) in try listValue(value, option: "--peer-gateways") }) {
            do { config.peerGateways = try AddressRule.parseList(text, allowPorts: false) } catch { throw UsageError("bad --peer-gateways: \(error)") }
            guard !config.dataPlaneTLS else {
                throw UsageError("--peer-gateways is for --data-plane-tls=False: with TLS between gateways, the session's key already decides who may connect")
            }
        }
        if let text = try parsed.value(Flag.consAllowedSources).map({ value throws(UsageError) in try listValue(value, option: ConsumerSources.flag) }) {
            do { config.consAllowedSources = try AddressRule.parseList(text, allowPorts: false) } catch { throw UsageError("bad \(ConsumerSources.flag): \(error)") }
        }
        if let text = try parsed.value(Flag.allowedIdentities).map({ value throws(UsageError) in try listValue(value, option: "--allowed-identities") }) {
            config.allowedIdentities = try IdentityPattern.parseList(text)
            guard config.clientSecret != nil else {
                throw UsageError("--allowed-identities needs authentication (--client-id and --client-secret): without it s2cs does not know who asks")
            }
        }
        if let text = try parsed.value(Flag.adminIdentities).map({ value throws(UsageError) in try listValue(value, option: "--admin-identities") }) {
            config.adminIdentities = try IdentityPattern.parseList(text, option: "--admin-identities")
            guard config.clientSecret != nil else {
                throw UsageError("--admin-identities needs authentication (--client-id and --client-secret): without it s2cs does not know who asks; the local admin channel (--admin-socket) needs none")
            }
        }
        config.adminSocket = parsed.value(Flag.adminSocket)
        if let path = config.adminSocket, path != "none" {
            guard !path.isEmpty, path.utf8.count <= Socket.maxUnixPathLength, !path.contains("\0") else {
                throw UsageError("bad --admin-socket '\(escapedForTerminal(path, limit: 120))': give a path of at most \(Socket.maxUnixPathLength) bytes, or 'none'")
            }
        }
        if let text = parsed.value(Flag.maxPortsPerClient) {
            config.maxPortsPerClient = try ArgumentParser.parseInt(text, option: "max-ports-per-client", range: 1...65535)
        }
        config.maxConnectionsPerClient = try ArgumentParser.parseInt(parsed.string(Flag.maxConnectionsPerClient), option: "max-connections-per-client", range: 1...1_000_000)
        if let text = parsed.value(Flag.maxPendingPorts) {
            config.maxPendingPorts = try ArgumentParser.parseInt(text, option: "max-pending-ports", range: 1...65535)
        }
        config.metrics = try metricsEndpoint(parsed)
        config.trafficCounting = try ArgumentParser.parseBool(parsed.string(Flag.trafficCounting), option: "--traffic-counting")
        config.keepSessionsOnExit = parsed.isSet(Flag.keepSessionsOnExit)
        if let text = parsed.value(Flag.maxSessionLifetime) {
            config.maxSessionLifetime = try ArgumentParser.parseDuration(text, option: "max-session-lifetime")
        }
        config.auditLog = parsed.value(Flag.auditLog)
        if config.auditLog?.isEmpty == true { throw UsageError("--audit-log is empty: give a file, or 'none' to write no audit log") }
        let chosenFolder = parsed.value(Flag.configFolder) ?? environment["HAPROXY_CONFIG_PATH"].flatMap { $0.isEmpty ? nil : $0 }
        config.configFolder = chosenFolder ?? DataPlane.defaultFolder(environment: environment)
        config.configFolderIsDefault = chosenFolder == nil
        config.searchPATH = environment["PATH"]
        config.kubernetesServiceHost = environment["KUBERNETES_SERVICE_HOST"].flatMap { IPAddress(numeric: $0) }
        return (config, parsed)
    }
}

extension ServerConfiguration {
    /// Where this s2cs keeps its session files once its control port is bound: the folder it was
    /// given (`--config-folder`, `$HAPROXY_CONFIG_PATH`), or by default `~/.scistream/s2cs-<port>`,
    /// so that two s2cs of one user on one host (the two gateways of a session, both writing
    /// `<uid>.conf`) never share one. Either way `SessionFolderLock` keeps a second s2cs out.
    public func sessionFolder(controlPort: UInt16) -> String {
        configFolderIsDefault ? "\(configFolder)/s2cs-\(controlPort)" : configFolder
    }

    /// Listener ports one client may hold: `--max-ports-per-client`, else half of `--port-range`.
    var portQuota: Int { maxPortsPerClient ?? max(1, (portRange.count + 1) / 2) }

    /// Listener ports pending requests may hold together: `--max-pending-ports`, else half of `--port-range`.
    var pendingPortCap: Int { maxPendingPorts ?? max(1, (portRange.count + 1) / 2) }

    /// The target policy this configuration asks for.
    /// Loopback targets are allowed (without `--allowed-targets`) only when this s2cs's producer-side
    /// listeners are themselves on loopback: a single-host demo, not a way into the gateway.
    var targetPolicy: TargetPolicy {
        let prodBind = prodListenerIP ?? listenerIP
        var policy = TargetPolicy(allowed: allowedTargets, allowLoopback: IPAddress(numeric: prodBind).map { address in
            TargetPolicy.isLoopback(address)
        } ?? (prodBind == "localhost"), kubernetesAPI: kubernetesServiceHost)
        policy.servicePorts = Set([port, metrics?.port].compactMap { $0 }.filter { $0 != 0 })
        policy.advertised = advertiseIP.flatMap { IPAddress(numeric: $0) }
        return policy
    }
}

/// One `--allowed-identities` item: a Globus username (`ada@example.org`) or a domain (`*@example.org`).
enum IdentityPattern {
    static func parseList(_ text: String, option: String = "--allowed-identities") throws(UsageError) -> [String] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { String($0) }
        var patterns: [String] = []
        for item in items {
            let bad = item.isEmpty || item.contains(where: { $0.isWhitespace || $0.isNewline || !$0.isASCII || $0.asciiValue.map { $0 < 0x21 || $0 == 0x7f } ?? true })
            let at = item.firstIndex(of: "@")
            let starOK = !item.contains("*") || (item.hasPrefix("*@") && item.dropFirst().firstIndex(of: "*") == nil)
            guard !bad, let at, at != item.startIndex || item.hasPrefix("*"), item.index(after: at) != item.endIndex, starOK,
                  item.filter({ $0 == "@" }).count == 1 else {
                throw UsageError("bad \(option): '\(item)' is not a username such as ada@example.org or a domain pattern such as *@example.org (comma-separated, no spaces)")
            }
            patterns.append(item.lowercased())
        }
        return patterns
    }

    /// Whether `username` matches one of `patterns` (case-insensitively).
    static func allows(_ patterns: [String], username: String?) -> Bool {
        guard let name = username?.lowercased(), !name.isEmpty else { return false }
        return patterns.contains { pattern in
            pattern.hasPrefix("*@") ? name.hasSuffix(String(pattern.dropFirst())) : name == pattern
        }
    }
}

extension ServerConfiguration {
    /// Authentication is on with a client secret (and so a client id), as in the original: without
    /// a secret, tokens are not checked.
    public var authenticationEnabled: Bool {
        guard let secret = clientSecret, !secret.isEmpty, let id = clientID, !id.isEmpty else { return false }
        return true
    }

    /// `--metrics HOST:PORT`, checked: a loopback address unless `--metrics-allow-remote`.
    static func metricsEndpoint(_ parsed: ParsedArguments) throws(UsageError) -> Endpoint? {
        guard let text = parsed.value(Flag.metrics) else {
            if parsed.isSet(Flag.metricsAllowRemote) {
                throw UsageError("--metrics-allow-remote needs --metrics <host:port>")
            }
            return nil
        }
        var endpoint: Endpoint
        // Port 0 picks a free port (printed at start), as --port 0 does.
        let anyPort = text.hasSuffix(":0")
        do { endpoint = try Endpoint.parse(anyPort ? text.dropLast() + "1" : text) } catch { throw UsageError("bad --metrics '\(text)': \(error)") }
        if anyPort { endpoint = Endpoint(host: endpoint.host, port: 0) }
        guard isLoopback(endpoint.host) || parsed.isSet(Flag.metricsAllowRemote) else {
            throw UsageError("--metrics \(endpoint) is not a loopback address: the page shows sessions and their traffic to anyone who reaches it; use 127.0.0.1:<port> (scraped through a local agent or a tunnel), or add --metrics-allow-remote and firewall that port")
        }
        return endpoint
    }

    /// 127.0.0.0/8, ::1 or localhost.
    static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
