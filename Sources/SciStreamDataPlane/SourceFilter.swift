#if canImport(Glibc)
import Glibc
#endif
import CSciStream
import SciStreamSystem

/// A classic BPF socket filter that admits packets only from a session's allowed sources: how a
/// stunnel listener (stunnel has no source ACL for the sockets it accepts on) is fenced. s2cs binds
/// the listener, attaches the filter before it listens, and hands it to stunnel by socket activation.
/// The kernel drops a stranger's SYN before a connection exists: the stranger's connect gets no
/// answer and nothing reaches the proxy.
public struct SourceFilter {
    struct Instruction: Equatable {
        var code: UInt16
        var jt: UInt8 = 0
        var jf: UInt8 = 0
        var k: UInt32
    }

    let program: [Instruction]

    // Classic BPF opcodes (linux/filter.h).
    private static let loadWord: UInt16 = 0x20      // BPF_LD | BPF_W | BPF_ABS
    private static let loadByte: UInt16 = 0x30      // BPF_LD | BPF_B | BPF_ABS
    private static let andConstant: UInt16 = 0x54   // BPF_ALU | BPF_AND | BPF_K
    private static let shiftRight: UInt16 = 0x74    // BPF_ALU | BPF_RSH | BPF_K
    private static let jumpIfEqual: UInt16 = 0x15   // BPF_JMP | BPF_JEQ | BPF_K
    private static let jump: UInt16 = 0x05          // BPF_JMP | BPF_JA
    private static let returnConstant: UInt16 = 0x06  // BPF_RET | BPF_K
    /// SKF_NET_OFF: loads relative to the IP header (a TCP socket's filter sees the TCP header at 0).
    private static let network = UInt32(bitPattern: -0x100000)

    init(allowing blocks: [SourceBlock]) {
        // An IPv4-mapped IPv6 block (::ffff:a.b.c.d/96+) is the IPv4 block it names: on a dual-stack
        // socket IPv4 peers arrive with IPv4 headers.
        var v4: [SourceBlock] = []
        var v6: [SourceBlock] = []
        for block in blocks {
            if block.isIPv4 {
                v4.append(block)
            } else if block.prefix >= 96, block.network[0..<12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
                      let mapped = SourceBlock(address: Array(block.network[12..<16]), prefix: block.prefix - 96) {
                v4.append(mapped)
            } else {
                v6.append(block)
            }
        }
        program = Self.assemble(v4: Self.matches(v4, sourceOffset: 12), v6: Self.matches(v6, sourceOffset: 8))
    }

    /// One rule per block: compare each 32-bit word the prefix covers, then jump to accept.
    /// `accept` jumps are emitted as placeholders (k = .max) and fixed by `assemble`.
    private static func matches(_ blocks: [SourceBlock], sourceOffset: UInt32) -> [Instruction] {
        var code: [Instruction] = []
        for block in blocks {
            var rule: [Instruction] = []
            for word in 0..<(block.network.count / 4) {
                let bits = min(32, max(0, block.prefix - word * 32))
                guard bits > 0 else { break }
                let mask: UInt32 = bits == 32 ? .max : ~(UInt32.max >> UInt32(bits))
                let bytes = block.network[(word * 4)..<(word * 4 + 4)]
                let value = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & mask
                rule.append(Instruction(code: loadWord, k: network &+ sourceOffset + UInt32(word * 4)))
                rule.append(Instruction(code: andConstant, k: mask))
                rule.append(Instruction(code: jumpIfEqual, k: value))  // jf filled below
            }
            rule.append(Instruction(code: jump, k: .max))  // to accept
            // A word that differs skips the rest of this rule (jf counts the instructions after it).
            for index in rule.indices where rule[index].code == jumpIfEqual {
                rule[index].jf = UInt8(rule.count - 1 - index)
            }
            code += rule
        }
        return code
    }

    /// The whole program: the IP version picks the section; a section that matches nothing rejects.
    private static func assemble(v4: [Instruction], v6: [Instruction]) -> [Instruction] {
        let reject = Instruction(code: returnConstant, k: 0)
        let accept = Instruction(code: returnConstant, k: .max)
        // 0 ldb version byte, 1 rsh 4, 2 jeq 4 (jt +0 -> 3, jf +1 -> 4), 3 ja IPv4 section, 4 ja IPv6 section
        var program = [Instruction(code: loadByte, k: network), Instruction(code: shiftRight, k: 4),
                       Instruction(code: jumpIfEqual, jt: 0, jf: 1, k: 4),
                       Instruction(code: jump, k: 1),  // IPv4: over the next jump, into the IPv4 section
                       Instruction(code: jump, k: UInt32(v4.count + 1))]  // else: over the IPv4 section and its reject
        program += v4 + [reject] + v6 + [reject, accept]
        let acceptIndex = program.count - 1
        for index in program.indices where program[index].code == jump && program[index].k == .max {
            program[index].k = UInt32(acceptIndex - index - 1)
        }
        return program
    }

    /// Why this process cannot attach a socket filter, or nil when it can. Seen on Linux 6.1 and
    /// 6.18: without CAP_NET_ADMIN, SO_ATTACH_FILTER fails with EPERM even for a one-instruction
    /// program, so an unprivileged s2cs cannot fence a stunnel listener.
    public static func refusal() -> Errno? {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return Errno.current }
        defer { _ = Glibc.close(fd) }
        do { try SourceFilter(allowing: []).attach(to: fd) } catch { return error }
        return nil
    }

    /// Attaches the program to `fd` (SO_ATTACH_FILTER).
    func attach(to fd: Int32) throws(Errno) {
        let codes = program.map(\.code), jts = program.map(\.jt), jfs = program.map(\.jf), ks = program.map(\.k)
        let result = scistream_attach_filter(fd, codes, jts, jfs, ks, UInt16(program.count))
        if result != 0 { throw Errno.current }
    }
}
