#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// This process's descriptor limit, and what /proc tells about another process (the s2cs under test).
enum ProcessProbe {
    /// Raises the soft RLIMIT_NOFILE to the hard limit: 1,000 pending sessions are 2,000 sockets here
    /// too. Returns the soft limit in force afterwards.
    @discardableResult
    static func raiseDescriptorLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }

    /// The resident set size of `pid` in KiB (VmRSS in /proc/<pid>/status), or nil if it cannot be read.
    static func residentKiB(pid: Int32) -> Int? {
        statusField("VmRSS", pid: pid)
    }

    /// The anonymous part of it in KiB (RssAnon: heap, stacks), without the pages of the shared
    /// libraries, which other processes share and which do not grow with sessions.
    static func anonymousResidentKiB(pid: Int32) -> Int? {
        statusField("RssAnon", pid: pid)
    }

    /// The peak resident set size of `pid` in KiB (VmHWM).
    static func peakResidentKiB(pid: Int32) -> Int? {
        statusField("VmHWM", pid: pid)
    }

    /// The number of descriptors `pid` has open (entries of /proc/<pid>/fd), or nil.
    static func openDescriptors(pid: Int32) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }

    /// The soft descriptor limit of `pid` ("Max open files" in /proc/<pid>/limits), or nil.
    static func descriptorLimit(pid: Int32) -> Int? {
        guard let text = procText("/proc/\(pid)/limits") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("Max open files") {
            let fields = line.dropFirst("Max open files".count).split(separator: " ")
            return fields.first.flatMap { Int($0) }
        }
        return nil
    }

    private static func statusField(_ name: String, pid: Int32) -> Int? {
        guard let text = procText("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            // "VmRSS:	    7424 kB"
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return fields.count >= 2 ? Int(fields[1]) : nil
        }
        return nil
    }
}

extension ProcessProbe {
    /// The number of threads of `pid` (Threads in /proc/<pid>/status).
    static func threads(pid: Int32) -> Int? {
        guard let text = procText("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(line.dropFirst("Threads:".count).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }

    /// The pids whose parent is `pid`.
    static func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { child in
            guard let stat = procText("/proc/\(child)/stat"),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid && fields[0] != "Z"
        }
    }
}

extension ProcessProbe {
    /// Every live process below `pid` (children, their children, ...), from the kernel's
    /// /proc/<pid>/task/<tid>/children lists: no walk over all of /proc.
    static func descendants(of pid: Int32) -> [Int32] {
        var found: [Int32] = [], seen: Set<Int32> = [pid], queue = [pid]
        while let parent = queue.popLast() {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(parent)/task")) ?? []
            for task in tasks {
                guard let text = procText("/proc/\(parent)/task/\(task)/children") else { continue }
                for child in text.split(separator: " ").compactMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
                where !seen.contains(child) && !isZombie(child) {
                    seen.insert(child)
                    found.append(child)
                    queue.append(child)
                }
            }
        }
        return found
    }

    /// The proportional set size of `pid` in KiB (Pss in /proc/<pid>/smaps_rollup): its private
    /// pages, and its share of the pages it shares with others (the proxy binary, libraries).
    static func proportionalKiB(pid: Int32) -> Int? {
        guard let text = procText("/proc/\(pid)/smaps_rollup") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("Pss:") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return fields.count >= 2 ? Int(fields[1]) : nil
        }
        return nil
    }

    /// A /proc file's whole text, read until its end. Not `String(contentsOfFile:)`: for a file whose
    /// size says 0, as /proc's do, it reads one page (4,092 bytes) and stops, which cut a children
    /// list of 1,000 pids short (bench/run's scale section counted 682 to 1,638 processes of 2,000).
    static func procText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes += chunk[0..<count]
        }
    }

    private static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = procText("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return true }  // gone
        return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
    }
}
