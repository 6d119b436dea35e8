import Testing
import SciStreamWire
@testable import SciStreamClient
@testable import SciStreamCommandLine
@testable import SciStreamServer

/// The command lines are declared once (`OptionSpec`: names, default, help); parsing, usage lines
/// and help are derived from the declarations, in-process.
@Suite struct CommandLineDeclarationTests {
    static var allSubcommands: [UserClient.Subcommand] {
        UserClient.subcommands + UserClient.streamSubcommands + UserClient.authSubcommands
    }

    /// The lines s2uc printed when they were written by hand (the README and the seeds' transcripts
    /// show some of them): derived from the declarations, they read the same.
    static let handWrittenUsage = [
        "s2uc inbound_request [--s2cs <host:port>] [--remote_ip <ip>] [--receiver_ports <ports>] [--num_conn <n>] [--rate <kb/s>] [--server_cert <file>] [--mock True] [--protocol udp]",
        "s2uc outbound_request [--s2cs <host:port>] [--receiver_ports <ports>] [--num_conn <n>] [--rate <kb/s>] [--server_cert <file>] [--protocol udp] <uid> <listener[,listener...]>",
        "s2uc release <uid> [--s2cs <host:port>] [--server_cert <file>] [--scope <scope_id>]",
        "s2uc list [--s2cs <host:port>] [--server_cert <file>] [--scope <scope_id>]",
        "s2uc stream_request --prod_s2cs <host:port> --cons_s2cs <host:port> [--remote_ip <ip>] [--receiver_ports <ports>] [--cons_receiver_ports <ports>] [--num_conn <n>] [--rate <kb/s>] [--server_cert <file>] [--prod_server_cert <file>] [--cons_server_cert <file>]",
        "s2uc stream_release <uid> --prod_s2cs <host:port> --cons_s2cs <host:port> [--server_cert <file>] [--prod_server_cert <file>] [--cons_server_cert <file>]",
        "s2uc login --scope <scope_id> [--s2cs <host:port>]",
        "s2uc check-auth --scope <scope_id> | --ip <host[:port]>",
        "s2uc logout",
    ]

    @Test func s2ucUsageLinesAreDerivedAndReadAsBefore() {
        #expect(Self.allSubcommands.map(\.usage) == Self.handWrittenUsage)
        for subcommand in Self.allSubcommands {
            #expect(ArgumentParser.undeclared(subcommand.usageItems, options: subcommand.options).isEmpty,
                    "\(subcommand.names[0])'s usage names an option it does not declare")
        }
    }

    @Test func s2csUsageShowsEveryFlag() {
        let usage = ServerConfiguration.usage
        for option in ServerConfiguration.options where option.name != "version" {
            #expect(usage.contains("[--\(option.spelling)"), "the usage line lacks --\(option.spelling): \(usage)")
        }
        #expect(usage.hasPrefix("s2cs [--listener-ip <ip>] "), "\(usage)")
        for item in ["[--port <port>]", "[--bind <ip>]", "[--port-range <start-end>]", "[--type <type>]", "[--verbose]"] {
            #expect(usage.contains(item), "\(item): \(usage)")
        }
        #expect(usage.contains("[--client-id <id>]") && usage.contains("[--metrics <host:port>]"), "\(usage)")
    }

    @Test func parsingReadsTheDeclaredDefaults() throws {
        let environment = ["HOME": "/home/operator", "PATH": "/usr/bin"]
        let (parsed, _) = try ServerConfiguration.parse([], environment: environment)
        // An empty command line gives the declaration (the struct's initial values), but for what
        // comes from the environment.
        var declared = ServerConfiguration()
        declared.configFolder = "/home/operator/.scistream"
        declared.configFolderIsDefault = true
        declared.searchPATH = "/usr/bin"
        #expect(parsed == declared)
        // Each default that help shows, given explicitly, is the declared value: help cannot show a
        // default that the struct does not hold.
        for option in ServerConfiguration.options {
            guard let shown = option.defaultValue else { continue }
            let (explicit, _) = try ServerConfiguration.parse(["--\(option.spelling)", shown], environment: environment)
            #expect(explicit == declared, "--\(option.spelling) \(shown)")
        }
        #expect(parsed.port == 5000 && parsed.portRange.description == "5100-5200" && parsed.helloTimeout == .seconds(180))
    }

    @Test func aGivenValueWinsOverTheDefaultInEverySpelling() throws {
        let options = UserClient.connectionOptions + UserClient.sessionOptions
        for arguments in [["--num_conn", "7"], ["--num-conn=7"], ["--NUM_CONN", "7"]] {
            let parsed = try ArgumentParser.parse(arguments, options: options, maxPositionals: 0)
            #expect(parsed.string(UserClient.Flag.numConn) == "7", "\(arguments)")
            #expect(parsed.string(UserClient.Flag.s2cs) == "localhost:5000")
        }
        #expect(try ArgumentParser.parse([], options: options, maxPositionals: 0).string(UserClient.Flag.receiverPorts) == "")
        #expect(throws: UsageError("missing value for '--rate' (expected --rate <kb/s>)")) {
            try ArgumentParser.parse(["--rate"], options: options, maxPositionals: 0)
        }
    }

    @Test func helpShowsEachDeclaredDefault() {
        let subcommand = UserClient.subcommands[0]
        let help = ArgumentParser.help(usage: subcommand.usage, abstract: subcommand.abstract, options: subcommand.options)
        #expect(help.contains("USAGE: " + Self.handWrittenUsage[0]))
        for option in subcommand.options {
            #expect(help.contains(option.display), "\(option.display)")
            if let value = option.defaultValue, !value.isEmpty { #expect(help.contains("(default: \(value))"), "\(option.name)") }
        }
    }

    @Test func theTopHelpListsEverySubcommandAsDeclared() {
        let help = UserClient.topHelp
        for subcommand in Self.allSubcommands {
            #expect(help.contains("  \(subcommand.names[0]) ") && help.contains(subcommand.abstract), "\(subcommand.names[0])")
        }
        #expect(help.contains("(also: prod-req)") && !help.contains("inbound-request"))
    }
}
