import Foundation
import Synchronization
import SciStreamWire
import SciStreamMetrics
import SciStreamSystem
import SciStreamTLS
import SciStreamDataPlane
import SciStreamCommandLine
import SciStreamPolicy

/// `s2cs`: parse, build, serve until SIGINT/SIGTERM/SIGQUIT, then stop every proxy and exit.
/// SIGHUP reloads, SIGUSR1 starts draining and SIGUSR2 ends it (`DaemonSignal`).
public enum ControlDaemon {
    public static func main(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        let config: ServerConfiguration
        let parsed: ParsedArguments
        do {
            (config, parsed) = try ServerConfiguration.parse(arguments, environment: environment)
        } catch {
            return Console.usageError(error, command: ServerConfiguration.command, usage: ServerConfiguration.usage)
        }
        if parsed.isSet(OptionSpec.help) {
            Console.out(ArgumentParser.help(usage: ServerConfiguration.usage,
                                            abstract: "SciStream control server: sets up proxies (S2DS) for sessions requested by s2uc.",
                                            options: ServerConfiguration.options))
            return ExitCode.success
        }
        if parsed.isSet(OptionSpec.version) {
            Console.out(SciStreamVersion.s2csLine)
            return ExitCode.success
        }

        signal(SIGPIPE, SIG_IGN)
        // Caught from here on (a signal that arrives during start-up waits for the loop below).
        let signals = DaemonSignal.events()
        let notifier = ServiceNotifier(environment: environment)
        raiseDescriptorLimit()
        let logger = Logger(label: "s2cs", level: config.verbose ? .debug : .info)
        // Before anything is bound: a range the limits cannot hold fails now, not at its 900th session.
        if let message = LimitCheck.apply(range: config.portRange, type: config.type, processors: ProcessInfo.processInfo.activeProcessorCount,
                                          isRoot: getuid() == 0, raised: { name, from, to in
            logger.info("raised a soft limit for --port-range", ["limit": name, "from": from, "to": "\(to)"])
        }) {
            return Console.runtimeError(StartupError(message))
        }

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
                                      path: config.searchPATH, countsTraffic: config.trafficCounting)
            // Before anything in the folder is read or written: no other s2cs uses it.
            folderLock = try SessionFolderLock.acquire(folder: folder)
        } catch {
            listener.close()
            return Console.runtimeError(error)
        }
        // Stunnel's listeners are fenced by socket filters, which the kernel allows only with
        // CAP_NET_ADMIN: sources the operator named must be enforced, or s2cs does not start.
        if let refusal = dataPlane.sourceFenceRefusal, config.consAllowedSources != nil {
            folderLock.release()
            listener.close()
            return Console.runtimeError(StartupError("\(ConsumerSources.flag) cannot be enforced with --type Stunnel: \(refusal). Run s2cs with CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN) or as root, or use --type Haproxy or Nginx, whose configs limit sources themselves"))
        }
        // With --keep-sessions-on-exit, the sessions an earlier s2cs left running (it exited with the
        // flag, or was killed) whose proxies are provably the ones it started are taken over;
        // reapStale stops and cleans up the rest (without the flag: all of them, as before).
        let adopted = config.type == .mock || !config.keepSessionsOnExit ? [] : await dataPlane.adoptSessions()
        let reaped = await dataPlane.reapStale(keeping: Set(adopted.map(\.record.uid)))
        if reaped > 0 { logger.info("stopped proxies left by an earlier s2cs", ["count": "\(reaped)"]) }

        let server: ControlServer
        do {
            server = try ControlServer(config: config, dataPlane: dataPlane, tls: tls, logger: logger, listener: listener)
        } catch {
            return Console.runtimeError(error)
        }
        if !adopted.isEmpty {
            await server.restore(adopted)
            logger.info("sessions taken over from an earlier s2cs", ["count": "\(adopted.count)"])
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
        if let refusal = dataPlane.sourceFenceRefusal {
            logger.warning("consumer-side listeners accept any source that reaches them: --type Stunnel has no source ACL and \(refusal); run s2cs with CAP_NET_ADMIN or as root to limit them to loopback and each session's requester, or use --type Haproxy or Nginx",
                           ["cons_listeners": consBind])
        } else if config.consAllowedSources == nil, let bind = IPAddress(numeric: consBind), bind.bytes.allSatisfy({ $0 == 0 }) {
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
                metricsServer = try MetricsServer(endpoint: endpoint, logger: logger) { await server.metricsPage($0) }
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
        notifier.ready(status: "serving on \(bound)")
        // Watchdog pings only while the registry answers: a hung s2cs stops pinging and systemd
        // restarts it (WatchdogSec= in the unit).
        let pinging = notifier.watchdogInterval.map { interval in
            Task {
                while !Task.isCancelled {
                    if await server.isHealthy(timeout: interval) { notifier.watchdog() }
                    try? await Task.sleep(for: interval)
                }
            }
        }
        var stopSignal = "end of signals"
        for await event in signals.stream {
            switch event {
            case .stop(let name):
                stopSignal = name
            case .reload:
                notifier.reloading()
                logger.info("reloading", ["signal": "SIGHUP"])
                do {
                    let (new, _) = try ServerConfiguration.parse(arguments, environment: environment)
                    let outcome = await server.reload(new)
                    for failure in outcome.failed { logger.error("reload: kept the old value", ["what": failure]) }
                    logger.info("reloaded", ["what": outcome.reloaded.joined(separator: "; ")])
                } catch {
                    logger.error("reload failed: everything stays as it was", ["error": error.description])
                }
                notifier.ready(status: "serving on \(bound)")
            case .drain(let on):
                server.setDraining(on)
                notifier.status(on ? "draining on \(bound): no new sessions" : "serving on \(bound)")
            }
            if case .stop = event { break }
        }
        withExtendedLifetime(signals.sources) {}
        notifier.stopping()
        pinging?.cancel()
        logger.info("stopping", ["signal": stopSignal])
        // SIGQUIT always ends every session; SIGTERM and SIGINT keep them with --keep-sessions-on-exit.
        await server.shutdown(keepingSessions: config.keepSessionsOnExit && stopSignal != "SIGQUIT")
        serving.cancel()
        folderLock.release()  // only once every proxy is stopped
        logger.info("s2cs stopped")
        return ExitCode.success
    }
}

/// What a signal asks of s2cs: SIGINT, SIGTERM and SIGQUIT stop it (every session ended); SIGHUP
/// reloads (the service manager's `reload`; a daemon has no terminal whose hang-up should stop it);
/// SIGUSR1 starts draining, SIGUSR2 ends it.
enum DaemonSignal: Sendable {
    case stop(String)
    case reload
    case drain(Bool)

    /// The signals as a stream of events, caught from the call on. A parent may start s2cs with them
    /// blocked (a mask is inherited across exec): they are unblocked, or shutdown would never be
    /// noticed and the proxies would outlive s2cs.
    static func events() -> (stream: AsyncStream<DaemonSignal>, sources: [any DispatchSourceSignal]) {
        let table: [(Int32, DaemonSignal)] = [(SIGINT, .stop("SIGINT")), (SIGTERM, .stop("SIGTERM")), (SIGQUIT, .stop("SIGQUIT")),
                                              (SIGHUP, .reload), (SIGUSR1, .drain(true)), (SIGUSR2, .drain(false))]
        let (stream, continuation) = AsyncStream<DaemonSignal>.makeStream(bufferingPolicy: .unbounded)
        var sources: [any DispatchSourceSignal] = []
        var set = sigset_t()
        sigemptyset(&set)
        for (number, event) in table {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(event) }
            source.resume()
            sources.append(source)
            sigaddset(&set, number)
        }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        return (stream, sources)
    }
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
