/// HPACK's Huffman coding of string literals (RFC 7541, section 5.2 and Appendix B).
public enum Huffman {
    /// The decoding tree: node `n` has children `tree[2n]` (bit 0) and `tree[2n + 1]` (bit 1); a
    /// child below 0 is the leaf of symbol `-child - 1`, 0 is "no such code" (the root is never a child).
    private static let tree: [Int32] = {
        var tree: [Int32] = [0, 0]
        for symbol in 0..<HuffmanCode.codes.count {
            let code = HuffmanCode.codes[symbol]
            let length = Int(HuffmanCode.lengths[symbol])
            var node = 0
            for position in stride(from: length - 1, through: 0, by: -1) {
                let slot = 2 * node + Int((code >> UInt32(position)) & 1)
                if position == 0 {
                    tree[slot] = -Int32(symbol) - 1
                } else {
                    if tree[slot] == 0 {
                        tree[slot] = Int32(tree.count / 2)
                        tree.append(contentsOf: [0, 0])
                    }
                    node = Int(tree[slot])
                }
            }
        }
        return tree
    }()

    /// Decodes `bytes`. Refuses EOS inside the string, padding longer than 7 bits or not all ones,
    /// and output beyond `limit` bytes.
    public static func decode(_ bytes: ArraySlice<UInt8>, limit: Int) throws(GRPCWireError) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(min(limit, bytes.count * 8 / 5 + 1))
        var node = 0
        var bitsSinceSymbol = 0
        var allOnesSinceSymbol = true
        for byte in bytes {
            for position in stride(from: 7, through: 0, by: -1) {
                let bit = Int((byte >> UInt8(position)) & 1)
                let child = tree[2 * node + bit]
                bitsSinceSymbol += 1
                if bit == 0 { allOnesSinceSymbol = false }
                if child < 0 {
                    let symbol = Int(-child - 1)
                    guard symbol < 256 else { throw .compression("Huffman string contains EOS") }
                    guard output.count < limit else { throw .compression("Huffman string longer than \(limit) bytes") }
                    output.append(UInt8(symbol))
                    node = 0
                    bitsSinceSymbol = 0
                    allOnesSinceSymbol = true
                } else if child == 0 {
                    throw .compression("invalid Huffman code")
                } else {
                    node = Int(child)
                }
            }
        }
        guard bitsSinceSymbol <= 7, allOnesSinceSymbol else {
            throw .compression("invalid Huffman padding")
        }
        return output
    }

    /// Encodes `bytes` (for clients and tests; the server sends its strings raw).
    public static func encode(_ bytes: some Sequence<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        var accumulator: UInt64 = 0
        var bits = 0
        for byte in bytes {
            accumulator = accumulator << UInt64(HuffmanCode.lengths[Int(byte)]) | UInt64(HuffmanCode.codes[Int(byte)])
            bits += Int(HuffmanCode.lengths[Int(byte)])
            while bits >= 8 {
                bits -= 8
                output.append(UInt8(truncatingIfNeeded: accumulator >> UInt64(bits)))
            }
        }
        if bits > 0 {
            // Pad with the most significant bits of EOS (all ones).
            output.append(UInt8(truncatingIfNeeded: accumulator << UInt64(8 - bits)) | UInt8(0xFF >> bits))
        }
        return output
    }

    /// The length of `bytes` Huffman-encoded, in bytes.
    public static func encodedCount(_ bytes: some Sequence<UInt8>) -> Int {
        (bytes.reduce(0) { $0 + Int(HuffmanCode.lengths[Int($1)]) } + 7) / 8
    }
}
