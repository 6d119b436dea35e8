import SciStreamWire
import Testing

@Suite struct SessionIDTests {
    @Test func validIDs() throws {
        #expect(try SessionID.validate(SessionID.mock.text) == "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3")
        #expect(try SessionID.validate("4F8583BC-A4D3-11EE-9FD6-034D1FCBD7C3") == SessionID.mock.text)
        #expect(try SessionID.validate("b87c38b2-798f-11ee-9fa8-9801a78d65ff") == "b87c38b2-798f-11ee-9fa8-9801a78d65ff")
        #expect(try SessionID.validate("00000000-0000-0000-0000-000000000000") == "00000000-0000-0000-0000-000000000000")
    }

    @Test(arguments: [
        "", "4f8583bc", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3a",
        "4f8583bca4d311ee9fd6034d1fcbd7c3", "{4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3}",
        "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7cg", "4f8583bc_a4d3-11ee-9fd6-034d1fcbd7c3",
        "4f8583b-ca4d3-11ee-9fd6-034d1fcbd7c3", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3\n",
        " 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3", "4f8583bc-a4d3-11ee-9fd6\n034d1fcbd7c3",
        "../../../../../etc/passwd\0aaaaaaaaa", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c٣", "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7ç",
        "4f8583bc a4d3 11ee 9fd6 034d1fcbd7c3", "urn:uuid:4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3",
    ])
    func invalidIDs(_ text: String) {
        #expect(throws: ValidationError.invalidSessionID(text)) { try SessionID.validate(text) }
    }

    @Test func invalidIDMessage() {
        #expect(ValidationError.invalidSessionID("abc").description
            == "'abc' is not a session id: use the uid the inbound request printed, "
            + "a UUID such as 4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3")
    }

    @Test func randomIDsAreVersion4AndUnique() throws {
        var seen = Set<String>()
        for _ in 0..<2000 {
            let uid = SessionID.random()
            #expect(try SessionID.validate(uid) == uid)
            let characters = Array(uid)
            #expect(characters[14] == "4")
            #expect("89ab".contains(characters[19]))
            seen.insert(uid)
        }
        #expect(seen.count == 2000)
    }

    @Test func randomIDsFromAGivenGeneratorAreReproducible() {
        var first = SeededGenerator(seed: 42)
        var second = SeededGenerator(seed: 42)
        let uid = SessionID.random(using: &first)
        #expect(uid == SessionID.random(using: &second))
        #expect(uid != SessionID.random(using: &first))
    }

    @Test func shortPrefix() {
        #expect(SessionID.shortPrefix(SessionID.mock.text) == "4f8583bc")
        #expect(SessionID.shortPrefix("abc") == "abc")
        #expect(SessionID.shortPrefix("") == "")
        // Not yet validated: anything but hex digits and dashes is quoted and escaped.
        #expect(SessionID.shortPrefix("ab x=y\u{1B}[2J") == "'ab x=y\\u{1B}['")
        #expect(SessionID.shortPrefix("a'\nb") == "'a\\'\\nb'")
    }
}
