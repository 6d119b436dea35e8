import SciStreamWire
import SciStreamSystem
import SciStreamDataPlane
import SciStreamCommandLine
import SciStreamPolicy

extension ControlServer {
    /// Answers one request message. Never throws: every failure becomes a status in the reply.
    func handle(_ message: Message, client: String, log: Logger, localAdmin: Bool = false) async -> Message {
        // With authentication on, nothing happens for a request whose token does not pass.
        let caller: Caller
        switch await authenticate(message, client: client, log: log, localAdmin: localAdmin) {
        case .success(let who):
            caller = who
            connectionTable.served(client)
        case .failure(let refused):
            var entry = AuditEntry(message, reply: refused.reply, client: client, identity: nil)
            entry.event = "refused"
            audit?.record(entry)
            return refused.reply
        }
        let reply = await answer(message, caller: caller, log: log)
        var entry = AuditEntry(message, reply: reply, client: client, identity: caller.username ?? caller.subject)
        if caller.admin { entry.admin = true }
        audit?.record(entry)
        return reply
    }

    /// The reply to one request from an authenticated (or, without authentication, any) caller.
    private func answer(_ message: Message, caller: Caller, log: Logger) async -> Message {
        switch message {
        case .request(let request):
            log.debug("request", ["session": request.uid.prefix, "role": "\(request.role)", "num_conn": "\(request.numConn)"])
            if isDraining {
                log.info("request refused: draining", ["session": request.uid.prefix])
                return .requestReply(RequestReply(status: Status(.unavailable, "this s2cs is draining: it takes no new sessions (its sessions go on); use another gateway or retry later"),
                                                  listeners: [], prodListeners: []))
            }
            do {
                return .requestReply(try await registry.request(request, uid: request.uid, caller: caller))
            } catch {
                log.info("request failed", ["session": request.uid.prefix, "status": "\(error.status.code)", "reason": error.status.message])
                return .requestReply(RequestReply(status: error.status, listeners: [], prodListeners: []))
            }

        case .hello(let hello):
            log.debug("hello", ["session": hello.uid.prefix, "role": "\(hello.role)"])
            do throws(StatusError) {
                // Nothing is resolved for a hello whose session does not wait for it (a bad uid is
                // refused at decoding), nor for more names than the session has use for.
                let uid = hello.uid
                try await registry.claimHello(hello, uid: uid, caller: caller)
                let checked: Result<[String], StatusError>
                do {
                    checked = .success(try await helloTargets(hello, log: log))
                } catch let refusal where refusal.status.code == .permissionDenied {
                    checked = .failure(refusal)
                } catch {
                    await registry.releaseHelloClaim(uid)
                    throw error
                }
                try await registry.hello(hello, uid: uid, caller: caller, checked: checked)
                return .helloReply(.ok)
            } catch {
                return .helloReply(error.status)
            }

        case .update(let update):
            return .updateReply(await handleUpdate(update, caller: caller, log: log))

        case .release(let release):
            return .releaseReply(await handleRelease(release, caller: caller, log: log))

        case .list(let list):
            // One listing for both parts: the sessions and their figures match.
            let listing = await registry.listing()
            let infos = sessionInfos(of: listing, for: caller)
            return .listReply(ListReply(status: .ok, sessions: infos,
                                        traffic: list.wantsTraffic ? await sessionTraffic(of: listing, for: caller) : nil))

        case .requestReply, .helloReply, .updateReply, .releaseReply, .listReply, .error:
            return .error(Status(.invalidArgument, "message kind 0x\(String(message.kind, radix: 16)) is a reply, not a request"))
        }
    }

    // MARK: targets

    /// The targets a hello names, parsed: for PROD, the producer application's addresses, checked
    /// against the target policy and resolved to numeric addresses; for CONS, the producer-side
    /// gateway's listeners, checked against the same policy (and again at the update, where they become targets).
    private func helloTargets(_ hello: Hello, log: Logger) async throws(StatusError) -> [String] {
        if hello.role == .cons {
            var listeners: [GatewayListener] = []
            for text in hello.prodListeners {
                do { listeners.append(try GatewayListener.parse(text)) }
                catch { throw StatusError(.invalidArgument, "bad producer listener in hello: \(error)") }
            }
            // Checked here too, so that a refused target ends the session at once (the update checks again).
            _ = try await allowedTargets(listeners.map(\.endpoint), uid: hello.uid, log: log)
            return listeners.map(\.description)
        }
        var endpoints: [Endpoint] = []
        for text in hello.prodListeners {
            do { endpoints.append(try Endpoint.parse(text)) }
            catch { throw StatusError(.invalidArgument, "bad producer listener in hello: \(error)") }
        }
        return try await allowedTargets(endpoints, uid: hello.uid, log: log).map(\.description)
    }

    /// The update's remote listeners as endpoints, checked against the target policy and resolved to
    /// numeric addresses (PROD and CONS alike).
    private func updateTargets(_ update: Update, log: Logger) async throws(StatusError) -> [Endpoint] {
        let plaintext = registry.plaintextDataPlane
        var endpoints: [Endpoint] = []
        for text in update.remoteListeners {
            let listener: GatewayListener
            do { listener = update.role == .cons ? try GatewayListener.parse(text) : GatewayListener(try Endpoint.parse(text), plaintext: false) }
            catch { throw StatusError(.invalidArgument, "bad remote listener in update: \(error)") }
            if update.role == .cons && listener.plaintext != plaintext {
                throw StatusError(.invalidArgument, listener.plaintext
                    ? "the producer-side listener \(listener) belongs to an s2cs started with --data-plane-tls=False, but this s2cs encrypts the hop between gateways: start both gateways' s2cs the same way"
                    : "this s2cs forwards plain TCP (--data-plane-tls=False), but the producer-side listener \(listener) is encrypted (its s2cs runs with the default --data-plane-tls=True): start both gateways' s2cs the same way")
            }
            endpoints.append(listener.endpoint)
        }
        // CONS targets too, in every mode: a CONS proxy connects wherever it is pointed, and even a
        // TLS client's connection attempt reaches (and may disturb) what listens there.
        return try await allowedTargets(endpoints, uid: update.uid, log: log)
    }

    /// Resolves each endpoint to a numeric address and checks it against the target policy. A refusal
    /// is PERMISSION_DENIED naming the flag; why goes to the log only.
    func allowedTargets(_ endpoints: [Endpoint], uid: SessionID, log: Logger) async throws(StatusError) -> [Endpoint] {
        var numeric: [Endpoint] = []
        for endpoint in endpoints {
            let address: IPAddress
            switch await TargetResolver.resolve(endpoint.host) {
            case .success(let found): address = found
            case .failure(let failure):
                log.info("target refused: cannot resolve", ["session": uid.prefix, "target": endpoint.description, "reason": failure.reason])
                throw StatusError(.invalidArgument, "cannot resolve the target host '\(endpoint.host)' on this s2cs: use a numeric address or a name the gateway resolves")
            }
            if let reason = targetPolicy.refusal(address, port: endpoint.port) {
                log.warning("target refused by policy", ["session": uid.prefix, "target": endpoint.description, "reason": reason])
                throw StatusError(.permissionDenied, "target \(endpoint) is not allowed by this s2cs (--allowed-targets): ask the gateway's operator")
            }
            numeric.append(Endpoint(host: address.canonical.description, port: endpoint.port))
        }
        return numeric
    }

    // MARK: update and release

    private func handleUpdate(_ update: Update, caller: Caller, log: Logger) async -> UpdateReply {
        let prefix = update.uid.prefix
        do {
            let targets = try await updateTargets(update, log: log)
            let uid = update.uid
            let listeners = try await registry.update(update, uid: uid, targets: targets, caller: caller)
            let reported = registry.reported(listeners, role: update.role)
            log.info("session active", ["session": prefix, "role": "\(update.role)", "listeners": reported.joined(separator: ","), "targets": targets.map(\.description).joined(separator: ",")])
            return UpdateReply(status: .ok, listeners: reported)
        } catch {
            log.info("update refused", ["session": prefix, "status": "\(error.status.code)", "reason": error.status.message])
            return UpdateReply(status: error.status, listeners: [])
        }
    }

    /// The reply to a whole frame whose uid is not a session id (refused at decoding): its kind's
    /// reply with INVALID_ARGUMENT saying what a uid looks like, as for any other refusal.
    static func invalidSessionIDReply(kind: UInt8, text: String, log: Logger) -> Message {
        let status = WireError.invalidSessionID(kind: kind, text: text).status
        switch kind {
        case 0x01:
            log.info("request failed", ["session": SessionID.shortPrefix(text), "status": "\(status.code)", "reason": status.message])
            return .requestReply(RequestReply(status: status, listeners: [], prodListeners: []))
        case 0x02:
            return .helloReply(status)
        case 0x03:
            log.info("update refused", ["session": SessionID.shortPrefix(text), "status": "\(status.code)", "reason": status.message])
            return .updateReply(UpdateReply(status: status, listeners: []))
        default:
            return .releaseReply(status)
        }
    }

    /// How a failed start is told to the remote client: the kind of failure, no local detail.
    static func remoteStatus(_ error: any Error, session: String) -> Status {
        guard let error = error as? DataPlaneError else {
            return Status(.internalError, "the proxy for session \(session) could not be started (details in the s2cs log)")
        }
        switch error {
        case .notInstalled, .invalidSpec, .listenerUnavailable, .notReady, .stoppedWhileStarting, .plaintextUnsupported:
            return Status(.unavailable, ErrorWording.dataPlane(error))
        default:
            return Status(.unavailable, "the proxy for session \(session) could not be started (details in the s2cs log)")
        }
    }

    private func handleRelease(_ release: Release, caller: Caller, log: Logger) async -> Status {
        do throws(StatusError) {
            // An admin may name a session by the prefix `list` shows.
            let uid: SessionID
            switch release.session {
            case .uid(let id):
                uid = id
            case .other(let text) where caller.admin:
                uid = try await registry.sessionID(adminPrefix: text)
            case .other(let text) where SessionID.looksLikePrefix(text):
                throw StatusError(.invalidArgument, "a uid prefix names a session only for this s2cs's operators (--admin-identities, or its admin socket): give the whole uid")
            case .other(let text):
                uid = try SessionRegistry.sessionID(text)
            }
            // Its last figures, before its proxy stops, go into the gateway-wide totals (read
            // whoever asks: nothing of them goes back to the caller).
            metrics.observe(await sessionTraffic(of: await registry.listing(), for: nil, only: uid))
            let note = try await registry.release(uid, caller: caller)
            log.info("session released", caller.admin ? ["session": uid.prefix, "admin": caller.username ?? "?"] : ["session": uid.prefix])
            return Status(.ok, "session \(uid.prefix) released" + (note.map { "; note: \($0)" } ?? ""))
        } catch {
            return error.status
        }
    }

    /// The sessions `caller` may see: with authentication on, its own; without, all of them, with
    /// targets and notes only for the address that requested each. A nil caller is the operator (the
    /// metrics page): every session.
    /// Each session's entry is rendered once per change of the registry (`SessionListing`, a proxy's
    /// exit included); here only what depends on the caller is added.
    func sessionInfos(of listing: SessionListing, for caller: Caller?) -> [SessionInfo] {
        var infos: [SessionInfo] = []
        infos.reserveCapacity(listing.entries.count)
        for entry in listing.entries {
            let detailed = caller.map { entry.visible(to: $0) } ?? true
            if entry.owner != nil && !detailed { continue }
            var info = entry.info
            // An operator sees whose session it is.
            if caller?.admin == true {
                let owner = "owner " + (entry.owner.map { entry.ownerName ?? "identity \($0)" } ?? "\(entry.client) (no authentication)")
                info.note = info.note.isEmpty ? owner : "\(owner); \(info.note)"
            }
            if !detailed {
                info.targets = []
                info.note = ""
            }
            infos.append(info)
        }
        return infos
    }
}
