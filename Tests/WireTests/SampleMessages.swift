import SciStreamWire

let mockUID = SessionID.mock
let zeroUID = SessionID("00000000-0000-0000-0000-000000000000")!  // safe: a canonical uid
let token = "INVALID_TOKEN"

/// At least one message of every kind, with ordinary and edge-case values.
let sampleMessages: [Message] = [
    .request(Request(token: token, uid: mockUID, role: .prod, numConn: 5, rate: 10000, listenPorts: [])),
    .request(Request(token: "", uid: zeroUID, role: .cons, numConn: .max, rate: .max, listenPorts: [1, 5100, 65535])),
    .hello(Hello(token: token, uid: mockUID, role: .prod, prodListeners: ["10.0.1.5:5001"])),
    .hello(Hello(token: "tök€n 🚀", uid: mockUID, role: .cons, prodListeners: [])),
    .update(Update(token: token, uid: mockUID, role: .cons,
                   remoteListeners: ["192.168.10.11:5100", "[2001:db8::10]:5101", ""])),
    .release(Release(token: token, uid: mockUID)),
    .release(Release(token: "", session: .other(""))),
    .release(Release(token: "", session: .other("4f8583bc"))),
    .list(ListSessions(token: token)),
    .requestReply(RequestReply(status: .ok, listeners: ["192.168.10.11:5100", "192.168.10.11:5101"],
                               prodListeners: ["10.0.1.5:5001"])),
    .requestReply(RequestReply(status: Status(.deadlineExceeded, "no hello within 180 s"),
                               listeners: [], prodListeners: [])),
    .helloReply(.ok),
    .helloReply(Status(.unauthenticated, "token inactive – log in again")),
    .updateReply(UpdateReply(status: .ok, listeners: ["192.168.10.11:5100"])),
    .updateReply(UpdateReply(status: Status(.internalError, "haproxy exited with status 1"), listeners: [])),
    .releaseReply(Status(.notFound, "no session 4f8583bc")),
    .releaseReply(.ok),
    .listReply(ListReply(status: .ok, sessions: [])),
    .listReply(ListReply(status: .ok, sessions: [
        SessionInfo(uid: mockUID.text, role: .prod, state: "running", listeners: ["192.168.10.11:5100"],
                    targets: ["10.0.1.5:5001"], note: "Haproxy"),
        SessionInfo(uid: "b87c38b2-798f-11ee-9fa8-9801a78d65ff", role: .cons, state: "waiting-for-hello",
                    listeners: ["0.0.0.0:5100", "0.0.0.0:5101"], targets: [], note: ""),
    ])),
    .error(Status(.invalidArgument, "unknown message kind 0x07")),
] + allStatusCodes.map { .error(Status($0, "\($0)")) }

let allStatusCodes: [StatusCode] = [
    .ok, .invalidArgument, .deadlineExceeded, .notFound, .alreadyExists, .permissionDenied,
    .resourceExhausted, .unimplemented, .internalError, .unavailable, .unauthenticated,
]

let allKinds: Set<UInt8> = [0x01, 0x02, 0x03, 0x04, 0x05, 0x81, 0x82, 0x83, 0x84, 0x85, 0xFF]
