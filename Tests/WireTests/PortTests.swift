import SciStreamWire
import Testing

@Suite struct PortTests {
    @Test(arguments: [("1", 1), ("80", 80), ("5001", 5001), ("65535", 65535), ("05001", 5001)] as [(String, UInt16)])
    func goodPorts(_ text: String, _ port: UInt16) throws {
        #expect(try Port.parse(text) == port)
    }

    @Test(arguments: ["50a1", "", " 5001", "5001 ", "-1", "+1", "0x10", "5001\n", "50 01", "'5001'", "5001#",
                      "5001;", "٣", "５００１", "1e3", "5001.0"])
    func notAPort(_ text: String) {
        #expect(throws: ValidationError.notAPort(text)) { try Port.parse(text) }
    }

    @Test(arguments: ["0", "00", "65536", "99999", "100000", "99999999999999999999999999999999"])
    func outOfRange(_ text: String) {
        #expect(throws: ValidationError.portOutOfRange(text)) { try Port.parse(text) }
    }

    @Test func messages() {
        #expect(ValidationError.notAPort("50a1").description
            == "'50a1' is not a port number: use an integer from 1 to 65535")
        #expect(ValidationError.portOutOfRange("0").description
            == "port '0' is out of range: use an integer from 1 to 65535")
        #expect(ValidationError.portOutOfRange("65536").description
            == "port '65536' is out of range: use an integer from 1 to 65535")
        #expect(ValidationError.notAPort("").description == "the port is empty: use an integer from 1 to 65535")
        #expect(ValidationError.notAPort("5001\n").description
            == "'5001\\n' is not a port number: use an integer from 1 to 65535")
    }

    @Test func goodLists() throws {
        #expect(try Port.parseList("5001") == [5001])
        #expect(try Port.parseList("5001,5002") == [5001, 5002])
        #expect(try Port.parseList("65535,1,5100") == [65535, 1, 5100])
    }

    @Test func emptyList() {
        #expect(throws: ValidationError.emptyPortList) { try Port.parseList("") }
        #expect(ValidationError.emptyPortList.description.hasPrefix("the receiver port list is empty"))
    }

    @Test(arguments: ["5001, 5002", "5001,,5002", ",5001", "5001,", ",", "5001;5002", "5001 5002", "5001\n",
                      "5001,5002\n", "[5001]", "5001-5002", "\"5001\""])
    func malformedLists(_ text: String) {
        #expect(throws: ValidationError.malformedPortList(text)) { try Port.parseList(text) }
    }

    @Test func badEntriesInLists() {
        #expect(throws: ValidationError.portOutOfRange("0")) { try Port.parseList("5001,0") }
        #expect(throws: ValidationError.portOutOfRange("65536")) { try Port.parseList("65536,5001") }
        #expect(throws: ValidationError.duplicatePort(5001, "5001,5002,5001")) { try Port.parseList("5001,5002,5001") }
        let tooMany = (1...4097).map(String.init).joined(separator: ",")
        #expect(throws: ValidationError.tooManyEntries(4097)) { try Port.parseList(tooMany) }
        #expect(ValidationError.malformedPortList("5001, 5002").description
            == "'5001, 5002' is not a port list: use ports separated by single commas, without spaces, e.g. 5001,5002")
    }
}

@Suite struct PortRangeTests {
    @Test func goodRanges() throws {
        let range = try PortRange.parse("5100-5200")
        #expect(range.lower == 5100 && range.upper == 5200)
        #expect(range.count == 101)
        #expect(range.description == "5100-5200")
        #expect(range.contains(5100) && range.contains(5200) && !range.contains(5201) && !range.contains(5099))
        #expect(range.ports == 5100...5200)
        #expect(try PortRange.parse("5100-5100").count == 1)
        #expect(try PortRange.parse("1-65535").count == 65535)
        #expect(try PortRange.parse("10000-20000") == PortRange(lower: 10000, upper: 20000))
    }

    @Test func startAfterEnd() {
        #expect(throws: ValidationError.reversedPortRange("5200-5100")) { try PortRange.parse("5200-5100") }
        #expect(throws: ValidationError.reversedPortRange("5200-5100")) { try PortRange(lower: 5200, upper: 5100) }
        #expect(ValidationError.reversedPortRange("5200-5100").description
            == "port range '5200-5100' starts after it ends: put the lower port first, e.g. 5100-5200")
    }

    @Test(arguments: ["", "5100", "5100-", "-5200", "5100--5200", "5100 - 5200", "5100-5200 ", "5100:5200",
                      "a-b", "5100-5200-5300", "5100-5200\n", "5100–5200", "+5100-5200", "5100-0x20"])
    func malformed(_ text: String) {
        #expect(throws: ValidationError.malformedPortRange(text)) { try PortRange.parse(text) }
    }

    @Test func outOfRangeEnds() {
        #expect(throws: ValidationError.portOutOfRange("0")) { try PortRange.parse("0-10") }
        #expect(throws: ValidationError.portOutOfRange("65536")) { try PortRange.parse("1-65536") }
        #expect(throws: ValidationError.portOutOfRange("0")) { try PortRange(lower: 0, upper: 10) }
    }
}
