import SciStreamWire
import Testing

@Suite struct EndpointTests {
    @Test(arguments: [
        ("192.168.10.11:5100", "192.168.10.11", 5100),
        ("0.0.0.0:5000", "0.0.0.0", 5000),
        ("255.255.255.255:65535", "255.255.255.255", 65535),
        ("localhost:5000", "localhost", 5000),
        ("gw-1.example.org:1", "gw-1.example.org", 1),
        ("a:1", "a", 1),
        ("x1.y2.z3:80", "x1.y2.z3", 80),
        ("123abc.example:80", "123abc.example", 80),
        ("[::1]:5100", "::1", 5100),
        ("[::]:5100", "::", 5100),
        ("[2001:db8::10]:5101", "2001:db8::10", 5101),
        ("[2001:DB8:0:0:0:0:0:10]:5101", "2001:DB8:0:0:0:0:0:10", 5101),
        ("[fe80::]:1", "fe80::", 1),
        ("[::ffff:192.0.2.1]:5100", "::ffff:192.0.2.1", 5100),
        ("[64:ff9b::192.0.2.33]:80", "64:ff9b::192.0.2.33", 80),
        ("[1:2:3:4:5:6:7:8]:9", "1:2:3:4:5:6:7:8", 9),
        ("[1:2:3:4:5:6:1.2.3.4]:9", "1:2:3:4:5:6:1.2.3.4", 9),
    ] as [(String, String, UInt16)])
    func goodEndpoints(_ text: String, _ host: String, _ port: UInt16) throws {
        let endpoint = try Endpoint.parse(text)
        #expect(endpoint == Endpoint(host: host, port: port))
        #expect(endpoint.description == text)
        #expect(try Endpoint.parse(endpoint.description) == endpoint)
    }

    @Test func structuralErrors() {
        let cases: [(String, ValidationError)] = [
            ("", .emptyAddress),
            ("192.168.10.11", .missingPort("192.168.10.11")),
            ("host:", .missingPort("host:")),
            (":5100", .missingHost(":5100")),
            ("[]:5100", .missingHost("[]:5100")),
            ("[::1]", .missingPort("[::1]")),
            ("[::1]:", .missingPort("[::1]:")),
            ("::1:5100", .unbracketedIPv6("::1:5100")),
            ("2001:db8::1:5100", .unbracketedIPv6("2001:db8::1:5100")),
            ("host:5100:5101", .notAPort("5100:5101")),
            ("1.2.3.4:5100:5101", .notAPort("5100:5101")),
            ("::1.2.3.4:5100", .unbracketedIPv6("::1.2.3.4:5100")),
            ("[::1:5100", .invalidHost("[::1:5100", .unbalancedBrackets)),
            ("[::1]5100", .invalidHost("[::1]5100", .unbalancedBrackets)),
            ("::1]:5100", .invalidHost("::1]:5100", .unbalancedBrackets)),
            ("host]:5100", .invalidHost("host]:5100", .unbalancedBrackets)),
            ("2001:db8::1", .unbracketedIPv6("2001:db8::1")),
            ("fe80::1%eth0:5100", .notAPort(":1%eth0:5100")),
        ]
        for (text, error) in cases {
            #expect(throws: error, "\(text)") { try Endpoint.parse(text) }
        }
    }

    @Test func portErrors() {
        #expect(throws: ValidationError.notAPort("50a1")) { try Endpoint.parse("host:50a1") }
        #expect(throws: ValidationError.portOutOfRange("0")) { try Endpoint.parse("host:0") }
        #expect(throws: ValidationError.portOutOfRange("65536")) { try Endpoint.parse("10.0.0.1:65536") }
        #expect(throws: ValidationError.notAPort("5100\n")) { try Endpoint.parse("host:5100\n") }
        #expect(throws: ValidationError.notAPort(" 5100")) { try Endpoint.parse("host: 5100") }
        #expect(throws: ValidationError.notAPort("5100 ")) { try Endpoint.parse("host:5100 ") }
        #expect(throws: ValidationError.notAPort("5100;")) { try Endpoint.parse("[::1]:5100;") }
        #expect(throws: ValidationError.notAPort("5100\nbind *:22")) { try Endpoint.parse("host:5100\nbind *:22") }
    }

    /// Characters that could end a directive or start another in a proxy config.
    @Test(arguments: [" ", "\n", "\r", "\t", "\"", "'", "#", ";", "{", "}", "$", "\\", "/", "_", "@", "%", "*",
                      "\0", "é", "\u{202E}", "`", "(", ",", "="])
    func injectionCharactersInHostsAreRejected(_ character: String) {
        let host = "gw\(character)x"
        #expect(throws: ValidationError.invalidHost(host, .badCharacter(Character(character)))) {
            try Endpoint.parse("\(host):5100")
        }
        #expect(throws: ValidationError.self) { try Endpoint.validateHost(host) }
        #expect(throws: ValidationError.self) { try Endpoint.parse("[::1\(character)]:5100") }
    }

    @Test func hostErrors() {
        let cases: [(String, ValidationError.HostProblem)] = [
            ("256.1.1.1", .badIPv4),
            ("1.2.3.256", .badIPv4),
            ("01.2.3.4", .badIPv4),
            ("1.2.3.04", .badIPv4),
            ("1.2.3", .badIPv4),
            ("1.2.3.4.5", .badIPv4),
            ("1..3.4", .badIPv4),
            ("1234.1.1.1", .badIPv4),
            ("example.123", .badIPv4),
            ("-host", .badLabel("-host")),
            ("host-", .badLabel("host-")),
            ("a..b", .badLabel("")),
            (".a", .badLabel("")),
            ("a.", .badLabel("")),
            ("a.-b.c", .badLabel("-b")),
            (String(repeating: "a", count: 64) + ".org", .badLabel(String(repeating: "a", count: 64))),
            (String(repeating: "abcdefgh.", count: 28) + "org", .tooLong(255)),
        ]
        for (host, problem) in cases {
            #expect(throws: ValidationError.invalidHost(host, problem), "\(host)") { try Endpoint.parse("\(host):5100") }
            #expect(throws: ValidationError.invalidHost(host, problem), "\(host)") { try Endpoint.validateHost(host) }
        }
        let sixtyThree = String(repeating: "a", count: 63)
        #expect(throws: Never.self) { try Endpoint.parse("\(sixtyThree).org:5100") }
    }

    @Test(arguments: ["1::2::3", "12345::", ":1::", "1:::2", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:",
                      "::1.2.3", "::256.1.1.1", "1::2:3:4:5:6:7:1.2.3.4", "1.2.3.4::", "::1.2.3.4:5", "g::1", ":",
                      "::ffff:01.2.3.4"])
    func badIPv6(_ host: String) {
        #expect(throws: ValidationError.self) { try Endpoint.parse("[\(host)]:5100") }
        #expect(throws: ValidationError.self) { try Endpoint.validateHost("[\(host)]") }
        #expect(throws: ValidationError.self) { try Endpoint.validateHost(host) }
    }

    @Test func zoneIDsAreRejected() {
        #expect(throws: ValidationError.invalidHost("fe80::1%eth0", .badCharacter("%"))) {
            try Endpoint.parse("[fe80::1%eth0]:5100")
        }
    }

    @Test func validateHost() throws {
        #expect(try Endpoint.validateHost("10.0.1.5") == "10.0.1.5")
        #expect(try Endpoint.validateHost("localhost") == "localhost")
        #expect(try Endpoint.validateHost("Gw.Example.ORG") == "Gw.Example.ORG")
        #expect(try Endpoint.validateHost("::1") == "::1")
        #expect(try Endpoint.validateHost("[::1]") == "::1")
        #expect(try Endpoint.validateHost("[2001:db8::10]") == "2001:db8::10")
        #expect(throws: ValidationError.invalidHost("", .empty)) { try Endpoint.validateHost("") }
        #expect(throws: ValidationError.invalidHost("[::1", .unbalancedBrackets)) { try Endpoint.validateHost("[::1") }
        #expect(throws: ValidationError.invalidHost("::1]", .unbalancedBrackets)) { try Endpoint.validateHost("::1]") }
        #expect(throws: ValidationError.invalidHost("[", .unbalancedBrackets)) { try Endpoint.validateHost("[") }
        #expect(throws: ValidationError.invalidHost("", .badIPv6)) { try Endpoint.validateHost("[]") }
        #expect(throws: ValidationError.self) { try Endpoint.validateHost("10.0.1.5:5001") }
    }

    /// nginx reads `proxy_pass unix:5000` as the socket file "5000": the one host validator, which the
    /// wire and the proxy configs share, refuses the name `unix` in any case.
    @Test func theNameUnixIsRefused() throws {
        for host in ["unix", "UNIX", "Unix"] {
            #expect(throws: ValidationError.invalidHost(host, .unixSocketPrefix)) { try Endpoint.validateHost(host) }
            #expect(throws: ValidationError.invalidHost(host, .unixSocketPrefix)) { try Endpoint.parse("\(host):5000") }
        }
        #expect(throws: ValidationError.self) { try Endpoint.parse("unix:/tmp/s.sock") }
        #expect(throws: ValidationError.self) { try parseListenerList("10.0.0.1:5100,unix:5000") }
        #expect(try Endpoint.validateHost("unix.example.org") == "unix.example.org")
        #expect(try Endpoint.validateHost("unixhost") == "unixhost")
        #expect(ValidationError.invalidHost("unix", .unixSocketPrefix).description
            == "'unix' is not a valid host: a proxy would read 'unix:' as a local socket path, not a host: use the host's IP address or another of its names")
    }

    @Test func descriptionsNameTheValueOnOneLine() {
        #expect(ValidationError.invalidHost("gw x", .badCharacter(" ")).description
            == "'gw x' is not a valid host: it contains ' '; a host is a DNS name (letters, digits, '-' and '.'), "
            + "an IPv4 address, or an IPv6 address in brackets")
        let injected = ValidationError.invalidHost("gw\nbind *:22", .badCharacter("\n")).description
        #expect(injected.hasPrefix("'gw\\nbind *:22' is not a valid host: it contains '\\n'"))
        #expect(!injected.contains("\n"))
        #expect(ValidationError.missingPort("10.0.0.1").description
            == "'10.0.0.1' has no port: use host:port, e.g. 192.0.2.10:5100 or [2001:db8::10]:5100")
        let spoof = ValidationError.invalidHost("a\u{202E}b'c", .badCharacter("\u{202E}")).description
        #expect(spoof.hasPrefix("'a\\u{202E}b\\'c' is not a valid host"))
        let long = ValidationError.missingPort(String(repeating: "a", count: 1000)).description
        #expect(long.hasPrefix("'" + String(repeating: "a", count: 80) + "…' has no port"))
    }
}

@Suite struct ListenerListTests {
    @Test func goodLists() throws {
        #expect(try parseListenerList("192.168.10.11:5100") == [Endpoint(host: "192.168.10.11", port: 5100)])
        #expect(try parseListenerList("a:1,[::1]:2,b.example:3") == [
            Endpoint(host: "a", port: 1), Endpoint(host: "::1", port: 2), Endpoint(host: "b.example", port: 3),
        ])
    }

    @Test func badLists() {
        #expect(throws: ValidationError.emptyListenerList) { try parseListenerList("") }
        #expect(throws: ValidationError.malformedListenerList("a:1,,b:2")) { try parseListenerList("a:1,,b:2") }
        #expect(throws: ValidationError.malformedListenerList("a:1,")) { try parseListenerList("a:1,") }
        #expect(throws: ValidationError.malformedListenerList(",")) { try parseListenerList(",") }
        #expect(throws: ValidationError.invalidHost(" b", .badCharacter(" "))) { try parseListenerList("a:1, b:2") }
        #expect(throws: ValidationError.notAPort("1\n")) { try parseListenerList("a:1\n") }
        #expect(throws: ValidationError.quotedListenerList("['192.168.10.11:5100']")) {
            try parseListenerList("['192.168.10.11:5100']")
        }
        #expect(throws: ValidationError.quotedListenerList("\"a:1\"")) { try parseListenerList("\"a:1\"") }
        #expect(throws: ValidationError.missingPort("[192.168.10.11:5100]")) { try parseListenerList("[192.168.10.11:5100]") }
        #expect(throws: ValidationError.missingPort("a")) { try parseListenerList("a:1,a") }
        let tooMany = Array(repeating: "a:1", count: 4097).joined(separator: ",")
        #expect(throws: ValidationError.tooManyEntries(4097)) { try parseListenerList(tooMany) }
    }
}

@Suite struct ValidatorFuzzTests {
    /// Whatever a validator accepts renders with only the characters a config can take safely.
    @Test func acceptedValuesRenderOnlySafeCharacters() throws {
        var random = SeededGenerator(seed: 7)
        let alphabet = Array("0123456789abcdefABCDEF:.[]-,; \n\t'\"#{}/%é\0x")
        let safe = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.:-[]")
        var accepted = 0
        for _ in 0..<20_000 {
            let text = String((0..<Int.random(in: 0...24, using: &random)).map { _ in
                alphabet.randomElement(using: &random) ?? "x"
            })
            if let endpoint = try? Endpoint.parse(text) {
                accepted += 1
                #expect(endpoint.description.allSatisfy(safe.contains), "\(text)")
                #expect(try Endpoint.parse(endpoint.description) == endpoint)
            }
            if let endpoints = try? parseListenerList(text) {
                #expect(endpoints.allSatisfy { $0.description.allSatisfy(safe.contains) }, "\(text)")
            }
            if let ports = try? Port.parseList(text) {
                #expect(!ports.isEmpty && !ports.contains(0))
            }
            if let range = try? PortRange.parse(text) {
                #expect(range.lower >= 1 && range.lower <= range.upper)
            }
            if let uid = try? SessionID.validate(text) {
                #expect(uid.count == 36)
            }
            _ = try? Endpoint.validateHost(text)
        }
        #expect(accepted > 0)
    }
}
