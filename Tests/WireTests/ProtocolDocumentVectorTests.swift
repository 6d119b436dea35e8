import Foundation
import SciStreamWire
import Testing

/// The hex vectors of docs/protocol.md: each block ```hex <name> (or ```hex-invalid <name>) holds one frame;
/// '#' starts a comment.
struct DocumentVector {
    var name: String
    var valid: Bool
    var bytes: [UInt8]
}

enum ProtocolDocument {
    static let url = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // WireTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // package root
        .appendingPathComponent("docs/protocol.md")

    static func vectors() throws -> [DocumentVector] {
        let text = try String(contentsOf: url, encoding: .utf8)
        var vectors: [DocumentVector] = []
        var current: DocumentVector?
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if var vector = current {
                if line.hasPrefix("```") {
                    vectors.append(vector)
                    current = nil
                    continue
                }
                let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
                for token in code.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
                    guard token.count % 2 == 0 else { throw VectorParseError(line: number + 1, text: String(line)) }
                    var index = token.startIndex
                    while index < token.endIndex {
                        let next = token.index(index, offsetBy: 2)
                        guard let byte = UInt8(token[index..<next], radix: 16) else {
                            throw VectorParseError(line: number + 1, text: String(line))
                        }
                        vector.bytes.append(byte)
                        index = next
                    }
                }
                current = vector
            } else if line.hasPrefix("```hex ") || line.hasPrefix("```hex-invalid ") {
                let words = line.dropFirst(3).split(separator: " ")
                guard words.count == 2 else { throw VectorParseError(line: number + 1, text: String(line)) }
                current = DocumentVector(name: String(words[1]), valid: words[0] == "hex", bytes: [])
            }
        }
        return vectors
    }
}

struct VectorParseError: Error, CustomStringConvertible {
    var line: Int
    var text: String
    var description: String { "docs/protocol.md:\(line): cannot read hex vector line '\(text)'" }
}

/// What each valid vector of docs/protocol.md decodes to.
let expectedValidVectors: [String: Message] = [
    "request": .request(Request(token: token, uid: mockUID, role: .prod, numConn: 5, rate: 10000, listenPorts: [])),
    "request-udp": .request(Request(token: token, uid: mockUID, role: .prod, numConn: 5, rate: 10000, listenPorts: [], udp: true)),
    "request-cons-ports": .request(Request(token: token, uid: mockUID, role: .cons, numConn: 1, rate: 10000,
                                           listenPorts: [5100, 5101])),
    "hello": .hello(Hello(token: token, uid: mockUID, role: .prod, prodListeners: ["10.0.1.5:5001"])),
    "update": .update(Update(token: token, uid: mockUID, role: .cons,
                             remoteListeners: ["192.168.10.11:5100", "[2001:db8::10]:5101"])),
    "release": .release(Release(token: token, uid: mockUID)),
    "list": .list(ListSessions(token: token)),
    "request-reply": .requestReply(RequestReply(status: .ok,
                                                listeners: ["192.168.10.11:5100", "192.168.10.11:5101"],
                                                prodListeners: ["10.0.1.5:5001"])),
    "hello-reply": .helloReply(.ok),
    "hello-reply-unauthenticated": .helloReply(Status(.unauthenticated, "token inactive \u{2013} log in again")),
    "update-reply": .updateReply(UpdateReply(status: .ok, listeners: ["192.168.10.11:5100"])),
    "release-reply": .releaseReply(Status(.notFound, "no session 4f8583bc")),
    "list-reply": .listReply(ListReply(status: .ok, sessions: [
        SessionInfo(uid: mockUID.text, role: .prod, state: "running", listeners: ["192.168.10.11:5100"],
                    targets: ["10.0.1.5:5001"], note: "Haproxy"),
    ])),
    "list-traffic": .list(ListSessions(token: token, wantsTraffic: true)),
    "list-reply-traffic": .listReply(ListReply(status: .ok, sessions: [
        SessionInfo(uid: "4f8583bc", role: .prod, state: "active", listeners: ["192.168.10.11:5100"],
                    targets: ["10.0.1.5:5001"], note: ""),
    ], traffic: [
        SessionTraffic(uid: "4f8583bc", ageSeconds: 75, counting: .live, openConnections: 1, totalConnections: 3,
                       bytesIn: 10_485_760, bytesOut: 4096),
    ])),
    "error": .error(Status(.invalidArgument, "unknown message kind 0x07")),
]

/// The error each invalid vector of docs/protocol.md must be rejected with.
let expectedInvalidVectors: [String: WireError] = [
    "frame-too-large": .frameTooLarge(4_294_967_295),
    "tls-client-hello": .frameTooLarge(369_295_618),
    "empty-frame": .emptyFrame,
    "unsupported-version": .unsupportedVersion(2),
    "unknown-kind": .unknownKind(7),
    "invalid-role": .invalidRole(3),
    "invalid-status": .invalidStatus(1),
    "invalid-utf8": .invalidUTF8("ListSessions.token"),
    "trailing-bytes": .trailingBytes(1),
    "list-bad-flags": .trailingBytes(1),
    "truncated": .truncated("Release.uid"),
    "too-many-items": .tooManyItems("Hello.prodListeners", 4097),
]

@Suite("docs/protocol.md test vectors")
struct ProtocolDocumentVectorTests {
    @Test func everyVectorIsKnownAndEveryExpectationHasAVector() throws {
        let vectors = try ProtocolDocument.vectors()
        let valid = Set(vectors.filter(\.valid).map(\.name))
        let invalid = Set(vectors.filter { !$0.valid }.map(\.name))
        #expect(valid == Set(expectedValidVectors.keys))
        #expect(invalid == Set(expectedInvalidVectors.keys))
        #expect(vectors.count == valid.count + invalid.count, "vector names must be unique")
    }

    @Test func everyMessageKindHasAVector() {
        #expect(Set(expectedValidVectors.values.map(\.kind)) == allKinds)
    }

    @Test func validVectorsDecodeToTheDescribedValueAndReEncodeToTheSameBytes() throws {
        for vector in try ProtocolDocument.vectors() where vector.valid {
            let expected = try #require(expectedValidVectors[vector.name])
            let decoded = try Message(decoding: vector.bytes)
            #expect(decoded == expected, "vector \(vector.name)")
            #expect(decoded.encoded() == vector.bytes, "vector \(vector.name)")
            #expect(try expected.checkedEncoded() == vector.bytes, "vector \(vector.name)")
        }
    }

    @Test func invalidVectorsAreRejectedWithTheNamedError() throws {
        for vector in try ProtocolDocument.vectors() where !vector.valid {
            let expected = try #require(expectedInvalidVectors[vector.name])
            #expect(throws: expected, "vector \(vector.name)") { try Message(decoding: vector.bytes) }
            // Streamed byte by byte, the decoder fails the same way, having buffered at most the frame.
            var decoder = FrameDecoder()
            var thrown: WireError?
            for byte in vector.bytes where thrown == nil {
                decoder.append([byte])
                do { _ = try decoder.nextMessage() } catch { thrown = error }
            }
            #expect(thrown == expected, "vector \(vector.name)")
        }
    }
}
