import Foundation
import Synchronization
import SciStreamWire
import SciStreamSystem
import SciStreamTLS
import SciStreamDataPlane

/// `s2cs`: parse, build, serve until SIGINT/SIGTERM, then stop every proxy and exit.
public enum ControlDaemon {
    public static func main(_ arguments: [String]) async -> Int32 {
        let config: ServerConfiguration
        let parsed: ParsedArguments
        do {
            (config, parsed) = try ServerConfiguration.parse(arguments, environment: ProcessInfo.processInfo.environment)
        } catch {
            return Console.usageError(error, command: ServerConfiguration.command, usage: ServerConfiguration.usage)
        }
        if parsed.isSet("help") {
            Console.out(ArgumentParser.help(usage: ServerConfiguration.usage,
                                            abstract: "SciStream control server: sets up proxies (S2DS) for sessions requested by s2uc.",
                                            options: ServerConfiguration.options))
            return ExitCode.success
        }
        if parsed.isSet("version") {
            Console.out(SciStreamVersion.s2csLine)
            return ExitCode.success
        }

        signal(SIGPIPE, SIG_IGN)
        unblockShutdownSignals()
        raiseDescriptorLimit()
        let logger = Logger(label: "s2cs", level: config.verbose ? .debug : .info)

        var tls: TLSContext? = nil
        if config.tls {
            do {
                tls = try TLSContext.server(certificatePath: config.serverCertificate, keyPath: config.serverKey)
            } catch {
                return Console.runtimeError(StartupError("\(ErrorWording.text(error)) (or start with --ssl=False for a plaintext control channel, development only)"))
            }
        }
        if let message = config.unbindableListenerAddress(canBind: { Socket.canBind(host: $0, port: 0) }) {
            return Console.runtimeError(StartupError(message))
        }
        // The control port first: the default session folder is named after it.
        let listener: Socket
        do {
            listener = try ControlServer.listen(config)
        } catch {
            return Console.runtimeError(error)
        }
        let folder = config.sessionFolder(controlPort: listener.localAddress?.port ?? config.port)
        let dataPlane: DataPlane
        let folderLock: SessionFolderLock
        do {
            let runAs = try config.proxyIdentity(effectiveUID: geteuid())
            dataPlane = try DataPlane(type: config.type, folder: folder, dataPlaneTLS: config.dataPlaneTLS,
                                      buffers: config.proxyBuffers, logger: logger, runAs: config.type == .mock ? nil : runAs,
                                      path: config.searchPATH)
            // Before anything in the folder is read or written: no other s2cs uses it.
            folderLock = try SessionFolderLock.acquire(folder: folder)
        } catch {
            listener.close()
            return Console.runtimeError(error)
        }
        await dataPlane.setCountsTraffic(config.trafficCounting)
        let reaped = await dataPlane.reapStale()
        if reaped > 0 { logger.info("stopped proxies left by an earlier s2cs", ["count": "\(reaped)"]) }

        let server: ControlServer
        do {
            server = try ControlServer(config: config, dataPlane: dataPlane, tls: tls, logger: logger, listener: listener)
        } catch {
            return Console.runtimeError(error)
        }
        let bound = server.boundAddress?.description ?? "\(config.bindAddress):\(config.port)"
        if let checker = server.tokenChecker {
            logger.info("authentication is on: every request's token is checked by Globus Auth introspection",
                        ["scope": checker.requiredScope, "introspect": checker.introspectURL])
        } else {
            logger.warning("authentication is off (no --client-secret): tokens are not checked; anyone who can reach the control port may set up sessions (within --allowed-targets), and sessions have no owner: whoever holds a uid may release it",
                           ["control": bound])
        }
        if let allowed = config.allowedTargets {
            logger.info("sessions may forward only to --allowed-targets", ["allowed": allowed.map(\.description).joined(separator: ",")])
        } else {
            logger.info("sessions may forward anywhere but loopback, link-local, cloud metadata and carrier-grade NAT addresses and this gateway's own addresses (restrict with --allowed-targets)",
                        ["loopback": server.targetPolicy.allowLoopback ? "allowed (--listener-ip is loopback)" : "refused"])
        }
        if let ephemeral = ephemeralPortRange(), config.portRange.lower <= ephemeral.upperBound, ephemeral.lowerBound <= config.portRange.upper {
            logger.warning("--port-range overlaps the kernel's ephemeral ports: an outgoing connection may take a session port and its proxy then fails to bind; choose a range outside them",
                           ["port_range": config.portRange.description, "ephemeral": "\(ephemeral.lowerBound)-\(ephemeral.upperBound)"])
        }
        if !config.dataPlaneTLS {
            logger.warning("data plane is PLAINTEXT (--data-plane-tls=False): bytes between gateways are neither encrypted nor authenticated (the uid keys nothing); use only on trusted networks")
            if let peers = config.peerGateways {
                logger.info("producer-side listeners accept only the peer gateways", ["peers": peers.map(\.description).joined(separator: ",")])
            } else {
                logger.warning("no --peer-gateways: inbound (PROD) sessions are refused in plaintext mode until the peer gateways' addresses are given")
            }
        }
        let consumers = ConsumerSources(configured: config.consAllowedSources)
        let consBind = config.bindIP(for: .cons)
        if config.consAllowedSources == nil, let bind = IPAddress(numeric: consBind), bind.bytes.allSatisfy({ $0 == 0 }) {
            logger.warning("consumer-side listeners bind every address of this host: only loopback and the address that requested each session may connect to them; name the consumer applications' addresses with \(ConsumerSources.flag)",
                           ["cons_listeners": consBind, "allowed": consumers.summary])
        } else {
            logger.info("consumer-side listeners accept only these sources", ["allowed": consumers.summary])
        }
        if !config.tls {
            logger.warning("control channel is PLAINTEXT (--ssl=False): development only")
        }
        logger.info("s2cs started", ["address": bound, "type": config.type.name, "tls": config.tls ? "on" : "off",
                                     "port_range": config.portRange.description, "listener_ip": config.listenerIP,
                                     "prod_listeners": "\(config.bindIP(for: .prod)) (told as \(config.advertisedIP(for: .prod)))",
                                     "cons_listeners": config.bindIP(for: .cons),
                                     "folder": folder, "proxy_user": dataPlane.runAs?.user ?? "(as s2cs)"])
        var metricsServer: MetricsServer? = nil
        if let endpoint = config.metrics {
            do {
                metricsServer = try MetricsServer(endpoint: endpoint, logger: logger) { await server.metricsText() }
                if let bound = metricsServer?.boundAddress { server.servesMetrics(on: bound) }
            } catch {
                return Console.runtimeError(error)
            }
        }
        Console.out("s2cs listening on \(bound)")
        if let metricsServer {
            let address = metricsServer.boundAddress?.description ?? "\(config.metrics?.description ?? "")"
            logger.info("metrics served", ["url": "http://\(address)/metrics"])
            Console.out("s2cs metrics on http://\(address)/metrics")
            Task { await metricsServer.run() }
        }

        let serving = Task { await server.run() }
        let signal = await shutdownSignal()
        logger.info("stopping", ["signal": signal])
        await server.shutdown()
        serving.cancel()
        folderLock.release()  // only once every proxy is stopped
        logger.info("s2cs stopped")
        return ExitCode.success
    }

    /// Waits for the first of SIGINT, SIGTERM, SIGHUP (the terminal that started s2cs closed) and
    /// SIGQUIT, and returns its name: each stops s2cs the same way.
    private static func shutdownSignal() async -> String {
        let signals: [(Int32, String)] = [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP"), (SIGQUIT, "SIGQUIT")]
        let fired = Mutex<CheckedContinuation<String, Never>?>(nil)
        var sources: [any DispatchSourceSignal] = []
        let name = await withCheckedContinuation { continuation in
            fired.withLock { $0 = continuation }
            for (number, name) in signals {
                signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
                source.setEventHandler {
                    fired.withLock { pending in
                        pending?.resume(returning: name)
                        pending = nil
                    }
                }
                source.resume()
                sources.append(source)
            }
        }
        withExtendedLifetime(sources) {}
        return name
    }
}

/// A parent may start s2cs with SIGINT/SIGTERM (or SIGHUP/SIGQUIT) blocked (a mask is inherited across exec): unblock
/// them, or shutdown would never be noticed and the proxies would outlive s2cs.
private func unblockShutdownSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    for number in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] { sigaddset(&set, number) }
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
}

/// The kernel's ephemeral port range (net.ipv4.ip_local_port_range), if readable.
private func ephemeralPortRange() -> ClosedRange<UInt16>? {
    guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8) else { return nil }
    let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { UInt16($0) }
    guard fields.count == 2, fields[0] <= fields[1] else { return nil }
    return fields[0]...fields[1]
}

/// Each session holds a few descriptors (control connections, proxy pipes): use the hard limit,
/// not the common soft default of 1,024.
private func raiseDescriptorLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

struct StartupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
