import COpenSSL

/// One entry of OpenSSL's per-thread error queue.
package struct OpenSSLError: Sendable, Equatable {
    package let code: UInt
    /// The full line, as `ERR_error_string_n` prints it ("error:0A00010B:SSL routines::wrong version number").
    package let line: String
    /// The short reason ("wrong version number"), or the line when OpenSSL has no reason text.
    package let reason: String

    var library: Int32 { scistream_ERR_GET_LIB(code) }
    var reasonCode: Int32 { scistream_ERR_GET_REASON(code) }

    func `is`(library: Int32, reason: Int32) -> Bool {
        self.library == library && reasonCode == reason
    }
}

/// OpenSSL keeps its errors in a per-thread queue. A task can resume on another thread after an
/// await, so the queue is cleared right before each OpenSSL call and drained right after it, on
/// the same thread, with no await in between: no error is ever left behind for someone else.
package enum OpenSSLErrorQueue {
    package static func clear() {
        ERR_clear_error()
    }

    /// Empties the calling thread's queue, oldest entry first.
    package static func drain() -> [OpenSSLError] {
        var errors: [OpenSSLError] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let reason = ERR_reason_error_string(code).map { String(cString: $0) } ?? line
            errors.append(OpenSSLError(code: code, line: line, reason: reason))
        }
        return errors
    }
}

extension Array where Element == OpenSSLError {
    /// The distinct short reasons, joined: what goes into an operator's message.
    package var reasons: String {
        var seen: [String] = []
        for error in self where !seen.contains(error.reason) {
            seen.append(error.reason)
        }
        return seen.joined(separator: "; ")
    }

    package var lines: [String] { map(\.line) }
}
