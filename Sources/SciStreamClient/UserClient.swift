import Foundation
import SciStreamWire
import SciStreamSystem
import SciStreamTLS
import SciStreamCommandLine

/// `s2uc`: the user's client. Each subcommand validates all its input before it talks to anyone.
public enum UserClient {
    public static let command = "s2uc"

    /// The options of the session commands, a constant each: values are read by these, never by a
    /// name in a string (a subcommand that declares an option anew, with its own help, is read by the
    /// same constant: the name is what counts, the subcommand's own declaration gives the default).
    enum Flag {
        static let s2cs = OptionSpec("s2cs", value: "host:port", default: "localhost:5000", help: "The s2cs to talk to; unix:PATH for its local admin socket (s2cs --admin-socket).")
        static let serverCert = OptionSpec("server_cert", value: "file", default: "server.crt", help: "Certificate that s2cs must present (the trust anchor).")
        static let ssl = OptionSpec("ssl", value: "bool", default: "True", help: "TLS to s2cs; False only for an s2cs started with --ssl=False.")
        static let scope = OptionSpec("scope", value: "scope_id", default: "", help: "Authentication scope id of that s2cs (its client id); default: the scope remembered for --s2cs at login, else none (INVALID_TOKEN).")
        static let remoteIP = OptionSpec("remote_ip", value: "ip", default: "localhost", help: "Inbound: address of the producer application.")
        static let receiverPorts = OptionSpec("receiver_ports", value: "ports", help: "Inbound: the producer application's ports; outbound: the local ports to listen on.")
        static let numConn = OptionSpec("num_conn", value: "n", default: "5", help: "Number of parallel connections (listeners).")
        static let rate = OptionSpec("rate", value: "kb/s", default: "0", help: "Maximum data rate per connection in kb/s, applied by Nginx (HAProxy and Stunnel cannot); 0: unlimited.")
        static let mock = OptionSpec("mock", value: "bool", default: "False", help: "Inbound: use the fixed uid \(SessionID.mock.text).")
        static let `protocol` = OptionSpec("protocol", value: "tcp|udp", default: "tcp",
            help: "udp: forward UDP datagrams as well as TCP on each listener (both gateways' s2cs must run --type Nginx --data-plane-tls=False).")
        static let json = OptionSpec("json", help: "Print one JSON object on stdout instead of the result lines (docs/json.md); errors still go to stderr too.")
    }

    static let connectionOptions: [OptionSpec] = [Flag.s2cs, Flag.serverCert, Flag.ssl, Flag.scope]

    static let sessionOptions: [OptionSpec] = [Flag.remoteIP, Flag.receiverPorts, Flag.numConn, Flag.rate, Flag.mock, Flag.protocol]

    struct Subcommand {
        let names: [String]
        /// The usage line's items; the options they name are shown as `options` declares them.
        let usageItems: [UsageItem]
        let abstract: String
        let options: [OptionSpec]
        let maxPositionals: Int
        let run: @Sendable (ParsedArguments) async throws -> Void

        init(names: [String], usage: [UsageItem], abstract: String, options: [OptionSpec], maxPositionals: Int,
             run: @escaping @Sendable (ParsedArguments) async throws -> Void) {
            self.names = names
            self.usageItems = usage
            self.abstract = abstract
            self.options = options
            self.maxPositionals = maxPositionals
            self.run = run
        }

        var usage: String { ArgumentParser.usageLine("s2uc \(names[0])", usageItems, options: options) }
    }

    static let subcommands: [Subcommand] = [
        Subcommand(names: ["inbound_request", "inbound-request", "prod-req", "prod_req"],
                   usage: [.optional("s2cs"), .optional("remote_ip"), .optional("receiver_ports"), .optional("num_conn"), .optional("rate"),
                           .optional("server_cert"), .optional("mock", value: "True"), .optional("protocol", value: "udp")],
                   abstract: "Set up the producer-side (inbound, PROD) proxy of a new session.",
                   options: connectionOptions + sessionOptions, maxPositionals: 0,
                   run: { try await runSession(role: .prod, $0) }),
        Subcommand(names: ["outbound_request", "outbound-request", "cons-req", "cons_req"],
                   usage: [.optional("s2cs"), .optional("receiver_ports"), .optional("num_conn"), .optional("rate"), .optional("server_cert"), .optional("protocol", value: "udp"),
                           .text("<uid>"), .text("<listener[,listener...]>")],
                   abstract: "Set up the consumer-side (outbound, CONS) proxy of a session, towards the producer-side listeners.",
                   options: connectionOptions + sessionOptions, maxPositionals: 2,
                   run: { try await runSession(role: .cons, $0) }),
        Subcommand(names: ["release"],
                   usage: [.text("<uid>"), .optional("s2cs"), .optional("server_cert"), .optional("scope")],
                   abstract: "Release a session: stop its proxy, free its ports, delete its key material.",
                   options: connectionOptions, maxPositionals: 1,
                   run: { try await runRelease($0) }),
        Subcommand(names: ["list"],
                   usage: [.optional("s2cs"), .optional("server_cert"), .optional("scope")],
                   abstract: "List the sessions of an s2cs (uid prefixes, states, listeners).",
                   options: connectionOptions, maxPositionals: 0,
                   run: { try await runList($0) }),
    ]

    /// The top-level help, from the subcommands' declarations (names, other spellings, abstracts).
    static var topHelp: String {
        let all = subcommands + streamSubcommands + authSubcommands
        var text = "OVERVIEW: SciStream user client: set up and release SciStream sessions.\n\nUSAGE: s2uc <subcommand> [options]\n\nSUBCOMMANDS:\n"
        let width = (all.map { $0.names[0].count }.max() ?? 0) + 4
        for subcommand in all {
            let primary = subcommand.names[0]
            var seen: Set<String> = [ArgumentParser.normalize(primary)]
            let others = subcommand.names.dropFirst().filter { seen.insert(ArgumentParser.normalize($0)).inserted }
            let also = others.isEmpty ? "" : " (also: \(others.joined(separator: ", ")))"
            text += "  " + primary + String(repeating: " ", count: width - primary.count) + subcommand.abstract + also + "\n"
        }
        text += "\nOPTIONS:\n  -v, --version" + String(repeating: " ", count: width - 13) + "Show the version.\n"
        text += "  -h, --help" + String(repeating: " ", count: width - 10) + "Show help information.\n"
        text += "\n  See 's2uc <subcommand> --help' for detailed help."
        return text
    }


    /// The output of the running command: human lines, or one JSON object with `--json`.
    static var output: CommandOutput { CommandOutput.current }

    /// Runs s2uc with its arguments (without the program name) and returns the exit status.
    /// `environment`: the process's, read here at the edge (tests may pass their own).
    public static func main(_ arguments: [String], environment: [String: String] = ProcessInfo.processInfo.environment) async -> Int32 {
        var arguments = arguments
        // `s2uc --json list` as well as `s2uc list --json`.
        if let first = arguments.first, first.hasPrefix("--"), ArgumentParser.normalize(first).hasPrefix("json") {
            arguments = Array(arguments.dropFirst()) + [first]
        }
        let json = CommandOutput.wantsJSON(arguments)
        guard let first = arguments.first else {
            Console.err("Error: missing subcommand")
            Console.err("Usage: s2uc <subcommand> [options]")
            Console.err("  See 's2uc --help' for more information.")
            return ExitCode.usage
        }
        if first == "--help" || first == "-h" || first == "help" {
            Console.out(topHelp)
            return ExitCode.success
        }
        if first == "--version" || first == "-v" || first == "version" {
            return printVersion(CommandOutput(command: "version", json: json))
        }
        guard let subcommand = (subcommands + streamSubcommands + authSubcommands).first(where: { $0.names.contains(first) }) else {
            return usageError(UsageError("unknown subcommand '\(first)'"), command: command, usage: "s2uc <subcommand> [options]", CommandOutput(command: nil, json: json))
        }
        let name = "\(command) \(subcommand.names[0])"
        let output = CommandOutput(command: subcommand.names[0], json: json)
        var parsed: ParsedArguments
        do {
            parsed = try ArgumentParser.parse(Array(arguments.dropFirst()),
                                              options: subcommand.options + [Flag.json, OptionSpec.help, OptionSpec.version],
                                              maxPositionals: subcommand.maxPositionals)
        } catch {
            return usageError(error, command: name, usage: subcommand.usage, output)
        }
        parsed.environment = environment
        if parsed.isSet(OptionSpec.help) {
            Console.out(ArgumentParser.help(usage: subcommand.usage, abstract: subcommand.abstract, options: subcommand.options + [Flag.json]))
            return ExitCode.success
        }
        if parsed.isSet(OptionSpec.version) {
            return printVersion(CommandOutput(command: "version", json: json))
        }
        do {
            try await CommandOutput.$current.withValue(output) {
                try await subcommand.run(parsed)
            }
            output.finish()
            return ExitCode.success
        } catch let error as UsageError {
            return usageError(error, command: name, usage: subcommand.usage, output)
        } catch {
            output.finish(error: errorDetails(error))
            return Console.runtimeError(error)
        }
    }

    /// A runtime error as JSON fields: the s2cs's status code (or `CLIENT_ERROR`), the message, the step.
    static func errorDetails(_ error: any Error) -> (code: String, message: String, step: String?) {
        let clientError = error as? ClientError
        return (clientError?.status?.code.description ?? "CLIENT_ERROR", ErrorWording.text(error), clientError?.step)
    }

    static func errorObject(_ error: any Error) -> JSONValue { CommandOutput.errorObject(errorDetails(error)) }

    /// A usage error: the human usage on stderr, with `--json` also a JSON object on stdout; exit 64.
    static func usageError(_ error: UsageError, command: String, usage: String, _ output: CommandOutput) -> Int32 {
        output.finish(error: ("USAGE_ERROR", error.message, nil))
        return Console.usageError(error, command: command, usage: usage)
    }

    static func printVersion(_ output: CommandOutput) -> Int32 {
        if output.json {
            output.set("version", SciStreamVersion.string)
            output.finish()
        } else {
            Console.out(SciStreamVersion.s2ucLine)
        }
        return ExitCode.success
    }

    // MARK: options

    /// The s2cs to talk to: `--s2cs`, with `--server_cert` (or, for `stream_request`, e.g. `--prod_s2cs`
    /// with `--prod_server_cert`, else `--server_cert`); errors name the option that was used.
    static func target(_ parsed: ParsedArguments, s2csOption: OptionSpec = Flag.s2cs, certOptions: [OptionSpec] = [Flag.serverCert]) throws -> ControlTarget {
        let text = parsed.string(s2csOption)
        // An s2cs's local admin socket (s2cs --admin-socket): list and release every session there.
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty, path.utf8.count <= Socket.maxUnixPathLength else {
                throw UsageError("bad --\(s2csOption.spelling) '\(text)': unix: needs the path of an s2cs admin socket (at most \(Socket.maxUnixPathLength) bytes)")
            }
            return ControlTarget(unixPath: path)
        }
        let endpoint: Endpoint
        do { endpoint = try Endpoint.parse(text) } catch { throw UsageError("bad --\(s2csOption.spelling) '\(text)': \(error)") }
        let useTLS = try ArgumentParser.parseBool(parsed.string(Flag.ssl), option: "--ssl")
        guard useTLS else { return ControlTarget(host: endpoint.host, port: endpoint.port, tls: TLSContext?.none) }
        let certOption = certOptions.first { parsed.given($0) != nil } ?? certOptions[certOptions.count - 1]
        let certificate = parsed.string(certOption)
        guard FileManager.default.fileExists(atPath: certificate) else {
            throw ClientError("the s2cs certificate '\(certificate)' does not exist: pass the certificate of \(endpoint) with --\(certOption.spelling), or --ssl False for an s2cs started with --ssl=False")
        }
        do {
            return ControlTarget(host: endpoint.host, port: endpoint.port, tls: try TLSContext.client(trustAnchorPath: certificate))
        } catch {
            throw ClientError("cannot use --\(certOption.spelling) '\(certificate)': \(ErrorWording.tls(error))")
        }
    }

    // MARK: inbound / outbound

    /// The options both halves take: `--num_conn`, `--rate`, `--mock`, `--protocol`.
    static func sessionValues(_ parsed: ParsedArguments) throws -> (numConn: Int, rate: Int, mock: Bool, udp: Bool) {
        let numConn = try ArgumentParser.parseInt(parsed.string(Flag.numConn), option: "num_conn", range: 1...SessionLimits.maxConnectionsPerSession)
        // Unlimited unless asked for: the original's documented default of 10000 kb/s was never enforced,
        // and enforcing it would cap every Nginx connection at 10 Mbit/s.
        let rate = try ArgumentParser.parseInt(parsed.string(Flag.rate), option: "rate", range: 0...Int(UInt32.max))
        let mock = try ArgumentParser.parseBool(parsed.string(Flag.mock), option: "--mock")
        let text = parsed.string(Flag.protocol)
        guard ["tcp", "udp"].contains(text.lowercased()) else {
            throw UsageError("'\(text)' is not valid for '--protocol': use tcp (the default) or udp")
        }
        return (numConn, rate, mock, text.lowercased() == "udp")
    }

    /// A port list option (`--receiver_ports`), empty when not given.
    static func ports(_ parsed: ParsedArguments, _ option: OptionSpec) throws -> [UInt16] {
        guard let text = parsed.value(option) else { return [] }
        do { return try Port.parseList(text) } catch { throw UsageError("bad --\(option.spelling): \(error)") }
    }

    /// Inbound: the producer application's addresses, `--remote_ip` with each of `--receiver_ports` (5074):
    /// at most `numConn` of them (each listener forwards to one; s2cs refuses a hello with more).
    static func producerApplication(_ parsed: ParsedArguments, numConn: Int) throws -> [String] {
        let remoteText = parsed.string(Flag.remoteIP)
        let remoteIP: String
        do { remoteIP = try Endpoint.validateHost(remoteText) } catch { throw UsageError("bad --remote_ip: \(error)") }
        let receiverPorts = try ports(parsed, Flag.receiverPorts)
        guard receiverPorts.count <= numConn else {
            throw UsageError("--receiver_ports lists \(receiverPorts.count) ports, more than --num_conn \(numConn): each listener forwards to one of them; give at most \(numConn), or raise --num_conn")
        }
        return (receiverPorts.isEmpty ? [5074] : receiverPorts).map { Endpoint(host: remoteIP, port: $0).description }
    }

    static func runSession(role: Role, _ parsed: ParsedArguments) async throws {
        // Validate everything before talking to anyone.
        let (numConn, rate, mock, udp) = try sessionValues(parsed)
        let uid: SessionID
        var prodListeners: [String]
        var listenPorts: [UInt16] = []
        switch role {
        case .prod:
            prodListeners = try producerApplication(parsed, numConn: numConn)
            uid = mock ? .mock : SessionID.newRandom()
        case .cons:
            // The uid may come from $SCISTREAM_UID (then only the listeners are given) or from standard
            // input ('-'), so that the session's secret need not appear on a command line.
            var positionals = parsed.positionals
            if positionals.count == 1, (try? SessionID.validate(positionals[0])) == nil, positionals[0] != "-", parsed.environment[uidVariable] != nil {
                positionals.insert("$" + uidVariable, at: 0)
            }
            guard positionals.count == 2 else {
                throw UsageError(positionals.isEmpty
                    ? "missing the session uid and the producer listener(s): s2uc outbound_request <uid> <listener[,listener...]>"
                    : "missing the producer listener(s) after the uid: s2uc outbound_request <uid> <listener[,listener...]>")
            }
            uid = try sessionUID(positionals[0], environment: parsed.environment)
            do { prodListeners = try GatewayListener.parseList(positionals[1]).map(\.description) } catch { throw UsageError("bad listener list: \(error)") }
            listenPorts = try ports(parsed, Flag.receiverPorts)
        }
        let target = try target(parsed)
        let token = try await accessToken(parsed, target: target)
        _ = try await runHalf(Half(role: role, uid: uid, prodListeners: prodListeners, listenPorts: listenPorts, numConn: numConn, rate: rate, udp: udp),
                              target: target, token: token)
    }

    /// One half of a session, validated: what the Request and Hello carry.
    struct Half {
        let role: Role
        let uid: SessionID
        /// Inbound: the producer application's addresses; outbound: the producer-side listeners.
        let prodListeners: [String]
        let listenPorts: [UInt16]
        let numConn: Int
        let rate: Int
        var udp = false
    }

    /// Sets up one half of a session at `target` (Request, Hello, Update), printing the seeds' lines;
    /// returns the half's listeners. A half that fails after its request was accepted is released.
    static func runHalf(_ half: Half, target: ControlTarget, token: String) async throws -> [String] {
        let (role, uid, prodListeners) = (half.role, half.uid, half.prodListeners)
        output.set("uid", uid.text)
        output.set("role", "\(role)")
        output.set("s2cs", target.display)
        output.line("uid; s2cs; access_token; role")
        output.line("\(uid.text) \(target.display) \(token) \(role)")

        // The request waits on its own connection until the hello arrives on a second one.
        let requestConnection = try await ControlConnection.open(target)
        output.line("sending client request message")
        let request = Request(token: token, uid: uid, role: role, numConn: UInt32(half.numConn), rate: UInt32(half.rate), listenPorts: half.listenPorts, udp: half.udp)
        let pendingReply = Task { () async throws(ClientError) -> RequestReply in
            try await requestConnection.request(request)
        }
        output.line("waiting for hello message")
        let helloConnection = try await ControlConnection.open(target)
        output.line("sending for hello message")
        let helloStatus = try await helloConnection.hello(Hello(token: token, uid: uid, role: role, prodListeners: prodListeners))
        guard helloStatus.code == .ok else {
            // If the request itself failed, its reason is the one to report.
            let early = Task { try await pendingReply.value }
            let watchdog = Task { try? await Task.sleep(for: .seconds(2)); early.cancel(); pendingReply.cancel() }
            switch await early.result {
            case .success(let failed) where failed.status.code != .ok:
                watchdog.cancel()
                throw failure("request", failed.status, target, uid: uid.text)
            case .failure(let refused as ClientError) where refused.status?.code == .invalidArgument && half.udp:
                // The request frame itself was refused: an s2cs that predates UDP sessions refuses their flag.
                watchdog.cancel()
                throw ClientError("\(refused); an s2cs older than UDP sessions refuses --protocol udp: upgrade that s2cs, or drop --protocol udp",
                                  status: refused.status, step: "request")
            default:
                break
            }
            watchdog.cancel()
            pendingReply.cancel()
            // The request may be pending on the s2cs: release it rather than leave it to time out.
            _ = try? await helloConnection.release(Release(token: token, uid: uid), timeout: .seconds(10))
            throw failure("hello", helloStatus, target, uid: uid.text)
        }
        output.line("Hello message sent successfully")

        let requestReply = try await pendingReply.value
        guard requestReply.status.code == .ok else { throw failure("request", requestReply.status, target, uid: uid.text) }

        let targets = role == .prod ? requestReply.prodListeners : prodListeners
        let update = try await helloConnection.update(Update(token: token, uid: uid, role: role, remoteListeners: targets))
        guard update.status.code == .ok else {
            // Leave nothing behind: release the half-made session before reporting.
            _ = try? await helloConnection.release(Release(token: token, uid: uid), timeout: .seconds(30))
            throw failure("update", update.status, target, uid: uid.text)
        }
        let listeners = update.listeners.isEmpty ? requestReply.listeners : update.listeners
        output.set("listeners", .strings(listeners))
        output.set("targets", .strings(targets))
        output.line("Listeners: [" + listeners.map { "'\(escapedForTerminal($0))'" }.joined(separator: ", ") + "]")
        return listeners
    }

    // MARK: release and list

    static func runRelease(_ parsed: ParsedArguments) async throws {
        guard let text = parsed.positionals.first ?? (parsed.environment[uidVariable] != nil ? "$" + uidVariable : nil) else {
            throw UsageError("missing the uid of the session to release: s2uc release <uid> --s2cs <host:port> (or '-' to read it from standard input, or set \(uidVariable))")
        }
        let uid = try sessionName(text, environment: parsed.environment)
        let target = try target(parsed)
        output.set("uid", uid.text)
        output.set("s2cs", target.display)
        let token = try await accessToken(parsed, target: target)
        let note = try await release(uid, target: target, token: token)
        output.line("Release completed")
        if let note {
            output.line(note)
            output.set("note", note)
        }
    }

    /// Releases a session at `target`; returns the s2cs's note (its proxy had exited), if any.
    static func release(_ uid: SessionName, target: ControlTarget, token: String) async throws -> String? {
        let connection = try await ControlConnection.open(target)
        let status = try await connection.release(Release(token: token, session: uid))
        guard status.code == .ok else { throw failure("release", status, target, uid: uid.text) }
        return status.message.contains("note:") ? escapedForTerminal(status.message) : nil
    }

    static func runList(_ parsed: ParsedArguments) async throws {
        let target = try target(parsed)
        output.set("s2cs", target.display)
        let token = try await accessToken(parsed, target: target)
        var answer: ListReply? = nil
        do {
            answer = try await ControlConnection.open(target).list(ListSessions(token: token, wantsTraffic: true))
        } catch {
            // An s2cs that predates the traffic section refuses the flag (an error frame): ask as before.
            guard error.status?.code == .invalidArgument else { throw error }
        }
        if answer == nil { answer = try await ControlConnection.open(target).list(ListSessions(token: token)) }
        guard let list = answer else { return }
        guard list.status.code == .ok else { throw failure("list", list.status, target, uid: nil) }
        let traffic = Dictionary((list.traffic ?? []).map { ($0.uid, $0) }, uniquingKeysWith: { first, _ in first })
        output.set("sessions", .array(list.sessions.map { jsonObject($0, traffic: traffic[$0.uid]) }))
        output.line("uid       role  state      listeners -> targets")
        for session in list.sessions {
            var line = escapedForTerminal("\(session.uid.padding(toLength: 9, withPad: " ", startingAt: 0)) \(String(describing: session.role).padding(toLength: 5, withPad: " ", startingAt: 0)) \(session.state.padding(toLength: 10, withPad: " ", startingAt: 0)) \(session.listeners.joined(separator: ",")) -> \(session.targets.joined(separator: ","))")
            if !session.note.isEmpty { line += "  (\(escapedForTerminal(session.note)))" }
            output.line(line)
            if let figures = traffic[session.uid] { output.line(trafficLine(figures)) }
        }
    }

    /// The second line of a session in `list`: `          age 75 s, connections 1 open, 3 in all, bytes in 10485760, out 4096 (live)`.
    static func trafficLine(_ traffic: SessionTraffic) -> String {
        var line = "          age \(traffic.ageSeconds) s"
        switch traffic.counting {
        case .none:
            line += ", traffic not counted"
        case .live, .closedConnections:
            line += ", connections \(traffic.openConnections) open, \(traffic.totalConnections) in all, bytes in \(traffic.bytesIn), out \(traffic.bytesOut)"
            line += traffic.counting == .live ? " (live)" : " (closed connections)"
        }
        return line
    }

    /// A session of `list` as JSON (docs/json.md).
    static func jsonObject(_ session: SessionInfo, traffic: SessionTraffic? = nil) -> JSONValue {
        var fields: [(String, JSONValue)] = [("uid", .string(session.uid)), ("role", .string("\(session.role)")), ("state", .string(session.state)),
                                             ("listeners", .strings(session.listeners)), ("targets", .strings(session.targets)), ("note", .string(session.note))]
        if let traffic {
            fields.append(("age_seconds", .int(Int(traffic.ageSeconds))))
            fields.append(("traffic", traffic.counting == .none ? .null : .object([
                ("counting", .string("\(traffic.counting)")),
                ("open_connections", .int(Int(traffic.openConnections))),
                ("total_connections", .int(Int(clamping: traffic.totalConnections))),
                ("bytes_in", .int(Int(clamping: traffic.bytesIn))),
                ("bytes_out", .int(Int(clamping: traffic.bytesOut))),
            ])))
        }
        return .object(fields)
    }

    /// The environment variable s2uc reads a session's uid from when the command line does not give it.
    static let uidVariable = "SCISTREAM_UID"

    /// A uid argument: the uid itself, `-` (one line of standard input), or `$SCISTREAM_UID`.
    static func sessionUID(_ argument: String, environment: [String: String]) throws -> SessionID {
        let (text, source) = try uidText(argument, environment: environment)
        do { return try SessionID(validating: text) } catch { throw UsageError("bad \(source): \(error)") }
    }

    /// A uid argument as `sessionUID` reads it or (release) the uid prefix `s2uc list` shows (8 or
    /// more characters): an s2cs takes a prefix only from an operator (`--admin-identities`, or its
    /// admin socket).
    static func sessionName(_ argument: String, environment: [String: String]) throws -> SessionName {
        let (text, source) = try uidText(argument, environment: environment)
        do { return .uid(try SessionID(validating: text)) } catch {
            if SessionID.looksLikePrefix(text) { return .other(text.lowercased()) }
            throw UsageError("bad \(source): \(error)")
        }
    }

    /// The text of a uid argument, and where it came from (for the usage error).
    private static func uidText(_ argument: String, environment: [String: String]) throws -> (text: String, source: String) {
        if argument == "-" {
            guard let line = readLine(strippingNewline: true) else {
                throw UsageError("uid '-' means read it from standard input, but standard input is empty: pipe the uid in, e.g. s2uc release - < uid.txt")
            }
            return (line.trimmingCharacters(in: .whitespaces), "uid on standard input")
        }
        if argument == "$" + uidVariable {
            return ((environment[uidVariable] ?? "").trimmingCharacters(in: .whitespaces), "uid in \(uidVariable)")
        }
        return (argument, "uid")
    }

    static func failure(_ step: String, _ status: Status, _ target: ControlTarget, uid: String?) -> ClientError {
        var hint = ""
        switch status.code {
        case .notFound:
            if let uid { hint = " (uid \(uid), s2cs \(target.display))" }
        case .unauthenticated:
            hint = loginHint(status)
        default:
            break
        }
        return ClientError("\(step) failed at s2cs \(target.display): \(status.code): \(escapedForTerminal(status.message))\(hint)", status: status, step: step)
    }
}
