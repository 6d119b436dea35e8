import SciStreamGRPC
import Testing

/// HPACK against RFC 7541's own examples (Appendix C), and its encoder through its decoder.
@Suite struct HPACKTests {
    static func hex(_ text: String) -> [UInt8] {
        let digits = Array(text.filter { !$0.isWhitespace })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    static func fields(_ pairs: [(String, String)]) -> [HeaderField] { pairs.map { HeaderField($0.0, $0.1) } }

    /// C.4: three requests with Huffman-coded strings, the dynamic table growing across them.
    @Test func decodesTheRFCRequestsWithHuffmanCoding() throws {
        var decoder = HPACKDecoder()
        #expect(try decoder.decode(Self.hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")) == Self.fields([
            (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")]))
        #expect(try decoder.decode(Self.hex("8286 84be 5886 a8eb 1064 9cbf")) == Self.fields([
            (":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"), ("cache-control", "no-cache")]))
        #expect(try decoder.decode(Self.hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")) == Self.fields([
            (":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"), ("custom-key", "custom-value")]))
        #expect(decoder.dynamicTable == Self.fields([
            ("custom-key", "custom-value"), ("cache-control", "no-cache"), (":authority", "www.example.com")]))
    }

    /// C.6: three responses with a 256-byte table, so that entries are evicted.
    @Test func decodesTheRFCResponsesWithEviction() throws {
        var decoder = HPACKDecoder(maxTableSize: 256)
        _ = try decoder.decode(Self.hex("""
            4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e
            919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3
            """))
        #expect(try decoder.decode(Self.hex("4883 640e ffc1 c0bf")) == Self.fields([
            (":status", "307"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com")]))
        #expect(try decoder.decode(Self.hex("""
            88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7
            821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed
            4ee5 b106 3d50 07
            """)) == Self.fields([
            (":status", "200"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
            ("location", "https://www.example.com"), ("content-encoding", "gzip"),
            ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")]))
        #expect(decoder.dynamicTable == Self.fields([
            ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
            ("content-encoding", "gzip"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT")]))
    }

    @Test func huffmanRoundTripsEveryByte() throws {
        let all = Array(0...255 as ClosedRange<UInt8>) + Array("www.example.com".utf8)
        let encoded = Huffman.encode(all)
        #expect(encoded.count == Huffman.encodedCount(all))
        #expect(try Huffman.decode(encoded[...], limit: 4096) == all)
        #expect(Huffman.encode(Array("www.example.com".utf8)) == Self.hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"))
    }

    @Test func huffmanRefusesBadPaddingAndEOS() {
        // "a" is 00011 (5 bits): padding with zeros is not EOS's prefix.
        #expect(throws: GRPCWireError.self) { try Huffman.decode([0b0001_1000][...], limit: 10) }
        // A whole byte of ones after a complete symbol: padding longer than 7 bits.
        #expect(throws: GRPCWireError.self) { try Huffman.decode([0b0001_1111, 0xFF][...], limit: 10) }
        // EOS itself (30 ones) inside the string.
        #expect(throws: GRPCWireError.self) { try Huffman.decode([0xFF, 0xFF, 0xFF, 0xFF][...], limit: 10) }
        #expect(throws: GRPCWireError.self) { try Huffman.decode(Huffman.encode(Array("abcdef".utf8))[...], limit: 3) }
    }

    @Test func encoderOutputDecodes() throws {
        let fields = Self.fields([(":status", "200"), ("content-type", "application/grpc"), ("grpc-message", String(repeating: "x", count: 300)), ("x-custom", "")])
        var decoder = HPACKDecoder()
        #expect(try decoder.decode(HPACKEncoder.encode(fields)) == fields)
        #expect(decoder.dynamicTable.isEmpty)
    }

    @Test func refusesWhatIsOutOfBounds() {
        var decoder = HPACKDecoder(maxTableSize: 4096, maxHeaderListSize: 100)
        // Index 62 with an empty dynamic table; index 0.
        #expect(throws: GRPCWireError.self) { try decoder.decode([0xBE]) }
        #expect(throws: GRPCWireError.self) { try decoder.decode([0x80]) }
        // A string length past the block; an integer that never ends; an oversized integer.
        #expect(throws: GRPCWireError.self) { try decoder.decode([0x00, 0x7F, 0x80, 0x01]) }
        #expect(throws: GRPCWireError.self) { try decoder.decode([0x00, 0x7F, 0xFF, 0xFF]) }
        #expect(throws: GRPCWireError.self) { try decoder.decode([0x00, 0x7F] + [UInt8](repeating: 0xFF, count: 12) + [0x01]) }
        // A table size update over the allowed size; a header list over its limit.
        #expect(throws: GRPCWireError.self) { try decoder.decode([0x3F, 0xE2, 0x1F]) }
        #expect(throws: GRPCWireError.self) {
            try decoder.decode(HPACKEncoder.encode([HeaderField("a", String(repeating: "b", count: 80))]))
        }
    }
}
