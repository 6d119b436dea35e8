import Testing
import SciStreamTLS
import SciStreamCommandLine

@Suite struct TLSProbeTests {
    @Test func recognisesAClientHello() {
        #expect(TLSProbe.looksLikeTLSClientHello([0x16, 0x03, 0x01, 0x02, 0x00]))
        #expect(TLSProbe.looksLikeTLSClientHello([0x16]))
        #expect(TLSProbe.looksLikeTLSClientHello([0x16, 0x03]))
    }

    @Test func rejectsFramesAndOtherBytes() {
        #expect(!TLSProbe.looksLikeTLSClientHello([]))
        #expect(!TLSProbe.looksLikeTLSClientHello([0x00, 0x00, 0x00, 0x0a, 0x01, 0x01]))
        #expect(!TLSProbe.looksLikeTLSClientHello(Array("GET / HTTP/1.1".utf8)))
        #expect(!TLSProbe.looksLikeTLSClientHello([0x16, 0x02, 0x00]))
        #expect(!TLSProbe.looksLikeTLSClientHello([0x16, 0x03, 0x09]))
    }

    @Test func aPlaintextServerCanReportATLSClient() {
        // What a plaintext s2cs says when TLSProbe spots a ClientHello.
        let error = TLSError(.peerIsTLS, side: .server, peer: "127.0.0.1:40000")
        #expect(error.description == "the client 127.0.0.1:40000 started a TLS handshake, but this server runs without TLS")
        #expect(ErrorWording.tls(error) == "the client 127.0.0.1:40000 started a TLS handshake, but this server runs without TLS (--ssl=False); run s2uc with --ssl False, or s2cs with TLS")
    }
}
