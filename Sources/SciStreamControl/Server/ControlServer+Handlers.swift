import SciStreamWire
import SciStreamSystem
import SciStreamDataPlane

extension ControlServer {
    /// Answers one request message. Never throws: every failure becomes a status in the reply.
    func handle(_ message: Message, client: String, log: Logger) async -> Message {
        // With authentication on, nothing happens for a request whose token does not pass.
        if let refusal = await authenticate(message, log: log) { return refusal }
        switch message {
        case .request(let request):
            log.debug("request", ["session": SessionID.shortPrefix(request.uid), "role": "\(request.role)", "num_conn": "\(request.numConn)"])
            do {
                return .requestReply(try await registry.request(request, client: client))
            } catch {
                log.info("request failed", ["session": SessionID.shortPrefix(request.uid), "status": "\(error.status.code)"])
                return .requestReply(RequestReply(status: error.status, listeners: [], prodListeners: []))
            }

        case .hello(let hello):
            log.debug("hello", ["session": SessionID.shortPrefix(hello.uid), "role": "\(hello.role)"])
            do {
                try await registry.hello(hello)
                return .helloReply(.ok)
            } catch {
                return .helloReply(error.status)
            }

        case .update(let update):
            return .updateReply(await handleUpdate(update, log: log))

        case .release(let release):
            return .releaseReply(await handleRelease(release, log: log))

        case .list(let list):
            return .listReply(ListReply(status: .ok, sessions: await sessionInfos(), traffic: list.wantsTraffic ? await sessionTraffic() : nil))

        case .requestReply, .helloReply, .updateReply, .releaseReply, .listReply, .error:
            return .error(Status(.invalidArgument, "message kind 0x\(String(message.kind, radix: 16)) is a reply, not a request"))
        }
    }

    private func handleUpdate(_ update: Update, log: Logger) async -> UpdateReply {
        let prefix = SessionID.shortPrefix(update.uid)
        let task: Task<Void, any Error>
        let listeners: [Endpoint]
        do {
            (task, listeners) = try await registry.beginUpdate(update)
        } catch {
            return UpdateReply(status: error.status, listeners: [])
        }
        do {
            try await task.value
            await registry.finishUpdate(uid: update.uid.lowercased(), error: nil)
            log.info("session active", ["session": prefix, "role": "\(update.role)", "listeners": registry.reported(listeners, role: update.role).joined(separator: ","), "targets": update.remoteListeners.joined(separator: ",")])
            return UpdateReply(status: .ok, listeners: registry.reported(listeners, role: update.role))
        } catch {
            await registry.finishUpdate(uid: update.uid.lowercased(), error: error)
            log.error("update failed", ["session": prefix, "error": "\(error)"])
            let code: StatusCode = (error is DataPlaneError) ? .unavailable : .internalError
            return UpdateReply(status: Status(code, "\(error)"), listeners: [])
        }
    }

    private func handleRelease(_ release: Release, log: Logger) async -> Status {
        let uid: String
        do { uid = try SessionRegistry.validUID(release.uid) } catch { return error.status }
        let pending: Task<Void, any Error>?
        do { pending = try await registry.beginRelease(uid) } catch { return error.status }
        _ = try? await pending?.value
        let note: String
        if case .exited(let description) = await dataPlane.status(uid: uid) {
            note = "; note: its proxy had exited unexpectedly (\(description))"
        } else {
            note = ""
        }
        await dataPlane.stop(uid: uid)
        await registry.finishRelease(uid)
        log.info("session released", ["session": SessionID.shortPrefix(uid)])
        return Status(.ok, "session \(SessionID.shortPrefix(uid)) released\(note)")
    }

    func sessionInfos() async -> [SessionInfo] {
        var infos: [SessionInfo] = []
        for session in await registry.snapshot() {
            var state: String
            var note = ""
            switch session.state {
            case .pending: state = "pending"
            case .ready: state = "ready"
            case .starting: state = "starting"
            case .active: state = "active"
            case .failed(let reason): state = "failed"; note = reason
            case .releasing: state = "releasing"
            }
            if state == "active", case .exited(let description) = await dataPlane.status(uid: session.uid) {
                state = "failed"
                note = "proxy exited unexpectedly (\(description))"
            }
            // Only a prefix of the uid: the whole uid is the session secret.
            infos.append(SessionInfo(uid: SessionID.shortPrefix(session.uid), role: session.role, state: state,
                                     listeners: registry.reported(session.listeners, role: session.role),
                                     targets: session.targets.map(\.description), note: note))
        }
        return infos
    }
}
