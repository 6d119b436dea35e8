import SciStreamWire

/// A failed RPC: the status code and message the client receives.
struct StatusError: Error, CustomStringConvertible {
    let status: Status
    init(_ code: StatusCode, _ message: String) { status = Status(code, message) }
    init(_ status: Status) { self.status = status }
    var description: String { "\(status.code): \(status.message)" }
}
