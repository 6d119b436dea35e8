/// The size of the buffers a proxy keeps for each connection: HAProxy's `tune.bufsize`, nginx's
/// `proxy_buffer_size`. Each connection through a proxy holds two (one per direction). Stunnel's are
/// fixed when it is built (18 KiB), so it has nothing to set.
///
/// The proxies' own defaults (16 KiB) leave throughput on the table; 64 KiB is the default because
/// larger buffers did not do steadily better (the figures: docs/benchmarks.md, buffer sizes).
/// 64 KiB costs 128 KiB per connection and proxy, 125 MiB for 1,000 connections; socket buffers are
/// left to the kernel's autotuning (a fixed SO_RCVBUF would also cap the TCP window on long paths).
public struct ProxyBuffers: Sendable, Equatable, CustomStringConvertible {
    /// Bytes per buffer; nil writes nothing, leaving the proxy's default (16 KiB).
    public let bytes: Int?

    /// What s2cs uses unless told otherwise (`s2cs --proxy-buffer-size`).
    public static let standard = ProxyBuffers(validBytes: 64 * 1024)
    /// The proxies' own defaults: the configs set no buffer size.
    public static let proxyDefaults = ProxyBuffers(validBytes: nil)

    /// The sizes accepted: 4 KiB to 256 KiB, in whole KiB. At 256 KiB, 1,000 connections through a
    /// proxy hold 500 MiB of buffers.
    public static let allowedKiB = 4...256

    private init(validBytes: Int?) { bytes = validBytes }

    /// `default` (the proxies' own sizes) or a size in KiB: `64k`, `64K` or `64` (KiB), within
    /// `allowedKiB`. Nil for anything else.
    public init?(parsing text: String) {
        if text.lowercased() == "default" {
            self = .proxyDefaults
            return
        }
        var digits = Substring(text)
        if let last = digits.last, last == "k" || last == "K" { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), digits.count <= 5,
              let kib = Int(digits), Self.allowedKiB.contains(kib) else { return nil }
        self.init(validBytes: kib * 1024)
    }

    /// As `--proxy-buffer-size` spells it: "64k" or "default".
    public var description: String { bytes.map { "\($0 / 1024)k" } ?? "default" }

    /// Lines for HAProxy's `global` section.
    var haproxyGlobal: [String] { bytes.map { ["    tune.bufsize \($0)"] } ?? [] }

    /// Lines for nginx's `stream` block.
    var nginxStream: [String] { bytes.map { ["    proxy_buffer_size \($0 / 1024)k;"] } ?? [] }
}
