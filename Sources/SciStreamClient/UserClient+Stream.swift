import SciStreamWire
import SciStreamCommandLine

/// `stream_request` and `stream_release`: both halves of a session with one command (the docs'
/// "centralized controller"). `stream_request` runs the inbound half at `--prod_s2cs`, then the
/// outbound half at `--cons_s2cs` towards the listeners it got, printing both halves' lines as
/// `inbound_request` and `outbound_request` do; if the outbound half fails, the inbound half is
/// released. The two-command flow stays as it is.
extension UserClient {
    static let sideOptions: [OptionSpec] = [
        OptionSpec("prod_s2cs", value: "host:port", help: "The producer-side s2cs (the inbound half)."),
        OptionSpec("cons_s2cs", value: "host:port", help: "The consumer-side s2cs (the outbound half)."),
        OptionSpec("server_cert", value: "file", default: "server.crt", help: "Certificate both s2cs must present, unless given per side."),
        OptionSpec("prod_server_cert", value: "file", help: "Certificate of the producer-side s2cs (default: --server_cert)."),
        OptionSpec("cons_server_cert", value: "file", help: "Certificate of the consumer-side s2cs (default: --server_cert)."),
        OptionSpec("ssl", value: "bool", default: "True", help: "TLS to both s2cs; False only for s2cs started with --ssl=False."),
        OptionSpec("scope", value: "id", default: "", help: "Authentication scope of both s2cs, unless given per side; default: the scope remembered for each address at login."),
        OptionSpec("prod_scope", value: "id", help: "Authentication scope (client id) of the producer-side s2cs."),
        OptionSpec("cons_scope", value: "id", help: "Authentication scope (client id) of the consumer-side s2cs."),
    ]

    static let streamSubcommands: [Subcommand] = [
        Subcommand(names: ["stream_request", "stream-request"],
                   usage: [.required("prod_s2cs"), .required("cons_s2cs"), .optional("remote_ip"), .optional("receiver_ports"),
                           .optional("cons_receiver_ports"), .optional("num_conn"), .optional("rate"), .optional("server_cert"),
                           .optional("prod_server_cert"), .optional("cons_server_cert")],
                   abstract: "Set up both halves of a session: the inbound half at --prod_s2cs, then the outbound half at --cons_s2cs.",
                   // The session options as inbound_request declares them; the ports are each side's own.
                   options: sideOptions + [
                       OptionSpec("receiver_ports", value: "ports", help: "The producer application's ports (default 5074)."),
                       OptionSpec("cons_receiver_ports", value: "ports", help: "The ports the consumer-side gateway listens on (default: from its --port-range)."),
                   ] + sessionOptions.filter { $0.name != "receiver_ports" },
                   maxPositionals: 0, run: { try await runStreamRequest($0) }),
        Subcommand(names: ["stream_release", "stream-release"],
                   usage: [.text("<uid>"), .required("prod_s2cs"), .required("cons_s2cs"), .optional("server_cert"),
                           .optional("prod_server_cert"), .optional("cons_server_cert")],
                   abstract: "Release both halves of a session: the outbound half at --cons_s2cs, then the inbound half at --prod_s2cs.",
                   options: sideOptions, maxPositionals: 1, run: { try await runStreamRelease($0) }),
    ]

    /// One gateway of a stream: its role, address, and the token its requests carry.
    struct Side {
        let role: Role
        let name: String  // "prod" or "cons": the prefix of its options and its key in JSON
        let target: ControlTarget
        let token: String
    }

    /// Both sides, validated (addresses, certificates, scopes) before anything is sent.
    static func sides(_ parsed: ParsedArguments) async throws -> (prod: Side, cons: Side) {
        for name in ["prod", "cons"] where parsed.given(parsed.option(named: "\(name)_s2cs")) == nil {
            throw UsageError("missing --\(name)_s2cs: give the \(name == "prod" ? "producer" : "consumer")-side s2cs as host:port")
        }
        let addresses = [parsed.value(parsed.option(named: "prod_s2cs")), parsed.value(parsed.option(named: "cons_s2cs"))].map { (try? Endpoint.parse($0 ?? ""))?.description.lowercased() }
        if let address = addresses[0], address == addresses[1] {
            throw UsageError("--prod_s2cs and --cons_s2cs are both \(address): the two halves of a session run on two gateways' s2cs")
        }
        var result: [Side] = []
        for (name, role) in [("prod", Role.prod), ("cons", Role.cons)] {
            let target = try target(parsed, s2csOption: parsed.option(named: "\(name)_s2cs"),
                                certOptions: [parsed.option(named: "\(name)_server_cert"), Flag.serverCert])
            result.append(Side(role: role, name: name, target: target, token: ""))
        }
        for index in result.indices {
            let side = result[index]
            let sideScope = parsed.option(named: "\(side.name)_scope")
            let scopeOption = parsed.given(sideScope) != nil ? sideScope : Flag.scope
            let token = try await accessToken(parsed, target: side.target, scopeOption: scopeOption)
            result[index] = Side(role: side.role, name: side.name, target: side.target, token: token)
        }
        return (result[0], result[1])
    }

    /// Runs `body` with its own output, whose fields become the object `key` of this command's JSON.
    static func withSideOutput<T>(_ key: String, _ body: () async throws -> T) async throws -> T {
        let parent = output
        let side = CommandOutput(command: nil, json: parent.json)
        defer { parent.set(key, side.details) }
        do {
            let result = try await CommandOutput.$current.withValue(side) { try await body() }
            side.set("ok", .bool(true))
            return result
        } catch {
            side.set("ok", .bool(false))
            side.set("error", errorObject(error))
            throw error
        }
    }

    // MARK: stream_request

    static func runStreamRequest(_ parsed: ParsedArguments) async throws {
        let (numConn, rate, mock, udp) = try sessionValues(parsed)
        let application = try producerApplication(parsed, numConn: numConn)
        let consumerPorts = try ports(parsed, parsed.option(named: "cons_receiver_ports"))
        let (prod, cons) = try await sides(parsed)
        let uid = mock ? SessionID.mock : SessionID.newRandom()
        output.set("uid", uid.text)

        let prodListeners = try await withSideOutput(prod.name) {
            try await runHalf(Half(role: .prod, uid: uid, prodListeners: application, listenPorts: [], numConn: numConn, rate: rate, udp: udp),
                              target: prod.target, token: prod.token)
        }
        let consListeners: [String]
        do {
            consListeners = try await withSideOutput(cons.name) {
                try await runHalf(Half(role: .cons, uid: uid, prodListeners: prodListeners, listenPorts: consumerPorts, numConn: numConn, rate: rate, udp: udp),
                                  target: cons.target, token: cons.token)
            }
        } catch {
            // Leave nothing behind: the inbound half is of no use without the outbound one.
            let outcome: String
            do {
                _ = try await release(.uid(uid), target: prod.target, token: prod.token)
                outcome = "the producer-side half at s2cs \(prod.target.display) was released (a stream needs both halves)"
                output.set("prod_released", .bool(true))
            } catch {
                outcome = "the producer-side half at s2cs \(prod.target.display) could not be released (\(ErrorWording.text(error))): release it with 's2uc release \(uid.text) --s2cs \(prod.target.display)'"
                output.set("prod_released", .bool(false))
            }
            let clientError = error as? ClientError
            throw ClientError("\(ErrorWording.text(error)); \(outcome)", status: clientError?.status, step: clientError?.step)
        }
        output.set("listeners", .strings(consListeners))
        output.line("Consumer listeners: [" + consListeners.map { "'\(escapedForTerminal($0))'" }.joined(separator: ", ") + "]")
    }

    // MARK: stream_release

    static func runStreamRelease(_ parsed: ParsedArguments) async throws {
        guard let text = parsed.positionals.first else {
            throw UsageError("missing the uid of the stream to release: s2uc stream_release <uid> --prod_s2cs <host:port> --cons_s2cs <host:port>")
        }
        let uid: SessionID
        do { uid = try SessionID(validating: text) } catch { throw UsageError("bad uid: \(error)") }
        let (prod, cons) = try await sides(parsed)
        output.set("uid", uid.text)
        // The consumer side first, so that no new connection enters a tunnel whose far end is going.
        var failures: [ClientError] = []
        for side in [cons, prod] {
            do {
                let note = try await withSideOutput(side.name) {
                    output.set("s2cs", side.target.display)
                    let note = try await release(.uid(uid), target: side.target, token: side.token)
                    if let note { output.set("note", note) }
                    return note
                }
                output.line("Release completed: \(side.role) at s2cs \(side.target.display)")
                if let note { output.line(note) }
            } catch let error as ClientError {
                failures.append(error)
            }
        }
        guard let first = failures.first else { return }
        let reasons = failures.map(\.description).joined(separator: "; ")
        throw ClientError(failures.count == 1 ? "\(reasons) (the other half was released)" : reasons, status: first.status, step: first.step)
    }
}
