import COpenSSL

extension TLSContext {
    /// Server side: agrees to ALPN "h2" when a client offers it (the original SciStream's gRPC
    /// clients require it); a client that offers no ALPN, or only other protocols, gets none and
    /// speaks SciStream's own protocol.
    public func selectHTTP2WhenOffered() {
        SSL_CTX_set_alpn_select_cb(context, { _, selected, selectedLength, offered, offeredLength, _ in
            guard let selected, let selectedLength, let offered else { return SSL_TLSEXT_ERR_NOACK }
            // The offer is a list of length-prefixed names.
            var index = 0
            let count = Int(offeredLength)
            while index < count {
                let length = Int(offered[index])
                guard index + 1 + length <= count else { break }
                if length == 2 && offered[index + 1] == UInt8(ascii: "h") && offered[index + 2] == UInt8(ascii: "2") {
                    selected.pointee = offered + index + 1
                    selectedLength.pointee = 2
                    return SSL_TLSEXT_ERR_OK
                }
                index += 1 + length
            }
            return SSL_TLSEXT_ERR_NOACK
        }, nil)
    }

    /// Client side: offers ALPN "h2" (a gRPC client; tests use it).
    public func offerHTTP2() {
        let protocols: [UInt8] = [2, UInt8(ascii: "h"), UInt8(ascii: "2")]
        _ = SSL_CTX_set_alpn_protos(context, protocols, UInt32(protocols.count))
    }
}
