import SciStreamGRPC
import Testing

/// The original's messages (scistream.proto's field numbers), byte by byte.
@Suite struct ProtobufTests {
    @Test func encodesAndDecodesARequest() throws {
        let request = ControlProto.Request(uid: "ab", role: "PROD", numConn: 5, rate: 10000)
        // field 1 (0x0a) "ab", field 2 (0x12) "PROD", field 3 (0x18) 5, field 4 (0x20) 10000 = 0x90 0x4e.
        let bytes: [UInt8] = [0x0A, 2, 0x61, 0x62, 0x12, 4, 0x50, 0x52, 0x4F, 0x44, 0x18, 5, 0x20, 0x90, 0x4E]
        #expect(request.encoded == bytes)
        #expect(try ControlProto.Request(decoding: bytes) == request)
    }

    @Test func negativeInt32TakesTenBytes() throws {
        let request = ControlProto.Request(uid: "", role: "", numConn: -1, rate: 0)
        #expect(request.encoded == [0x18] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
        #expect(try ControlProto.Request(decoding: request.encoded).numConn == -1)
    }

    @Test func skipsUnknownFieldsAndKeepsRepeatedOrder() throws {
        // Unknown field 9 (varint), field 10 (fixed64), field 11 (fixed32), field 12 (bytes), then listeners.
        let bytes: [UInt8] = [0x48, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5D, 1, 2, 3, 4, 0x62, 1, 0x00,
                              0x0A, 1, 0x61, 0x0A, 1, 0x62, 0x12, 1, 0x63]
        let response = try ControlProto.Response(decoding: bytes)
        #expect(response == ControlProto.Response(listeners: ["a", "b"], prodListeners: ["c"]))
        let hello = ControlProto.Hello(uid: "u", prodListeners: ["x:1", "y:2"], role: "CONS")
        #expect(try ControlProto.Hello(decoding: hello.encoded) == hello)
        let update = ControlProto.UpdateTargets(uid: "u", remoteListeners: ["x:1"], role: "PROD")
        #expect(try ControlProto.UpdateTargets(decoding: update.encoded) == update)
        let app = ControlProto.AppResponse(message: "m", listeners: ["l"])
        #expect(try ControlProto.AppResponse(decoding: app.encoded) == app)
        #expect(try ControlProto.Release(decoding: ControlProto.Release(uid: "u").encoded).uid == "u")
    }

    @Test func refusesMalformedMessages() {
        let bad: [[UInt8]] = [
            [0x0A, 5, 0x61],                      // string runs past the end
            [0x0A, 2, 0xC3, 0x28],                // not UTF-8
            [0x18] + [UInt8](repeating: 0xFF, count: 11),  // varint too long
            [0x1B],                               // group (wire type 3)
            [0x00, 0x01],                         // field number 0
            [0x18],                               // key without value
            [0x51, 1, 2],                         // fixed64 cut short
        ]
        for bytes in bad {
            #expect(throws: GRPCWireError.self, "\(bytes)") { try ControlProto.Request(decoding: bytes) }
        }
    }
}
