import Testing
import SciStreamAuth

@Suite struct PKCETests {
    @Test func rfc7636AppendixBVector() {
        let pair = PKCE(verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        #expect(pair.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    }

    @Test func base64URLHasNoPaddingAndTheURLAlphabet() {
        #expect(PKCE.base64URL([]) == "")
        #expect(PKCE.base64URL(Array("f".utf8)) == "Zg")
        #expect(PKCE.base64URL(Array("fo".utf8)) == "Zm8")
        #expect(PKCE.base64URL(Array("foo".utf8)) == "Zm9v")
        #expect(PKCE.base64URL(Array("foob".utf8)) == "Zm9vYg")
        #expect(PKCE.base64URL([0xfb, 0xff, 0xfe]) == "-__-")
    }

    @Test func sha256OfTheEmptyString() {
        let hex = PKCE.sha256([]).map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
        #expect(hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func freshVerifiersAre43URLSafeCharactersAndNeverRepeat() throws {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var seen: Set<String> = []
        for _ in 0..<100 {
            let pair = try PKCE.make()
            #expect(pair.verifier.count == 43)
            #expect(pair.verifier.allSatisfy { allowed.contains($0) })
            #expect(pair.challenge.count == 43)
            #expect(pair == PKCE(verifier: pair.verifier))
            seen.insert(pair.verifier)
        }
        #expect(seen.count == 100)
    }
}
