// libFuzzer target: the validators that guard every value reaching a generated proxy config.
// Whatever they accept must be free of anything that could inject a config directive.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzValidators(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:-[],")
    func check(_ accepted: String, _ what: String) {
        precondition(accepted.allSatisfy { safe.contains($0) }, "\(what) accepted an unsafe value: \(accepted.debugDescription)")
    }
    if let endpoint = try? Endpoint.parse(text) {
        check(endpoint.description, "Endpoint.parse")
        precondition(endpoint.port >= 1, "Endpoint.parse accepted port 0")
        precondition((try? Endpoint.parse(endpoint.description)) == endpoint, "Endpoint does not round-trip: \(text.debugDescription)")
    }
    if let host = try? Endpoint.validateHost(text) { check(host, "validateHost") }
    if let ports = try? Port.parseList(text) {
        precondition(!ports.isEmpty && ports.allSatisfy { $0 >= 1 }, "Port.parseList accepted \(ports)")
    }
    if let range = try? PortRange.parse(text) {
        precondition(range.lower >= 1 && range.lower <= range.upper, "PortRange.parse accepted \(range)")
    }
    if let uid = try? SessionID.validate(text) {
        precondition(uid.count == 36 && uid.allSatisfy { "0123456789abcdef-".contains($0) }, "SessionID accepted \(uid.debugDescription)")
    }
    if let listeners = try? parseListenerList(text) {
        for listener in listeners { check(listener.description, "parseListenerList") }
    }
    return 0
}
