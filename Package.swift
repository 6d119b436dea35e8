// swift-tools-version: 6.0
// SciStream in Swift: s2uc (user client) and s2cs (control server).
// No Swift package dependencies: Foundation, Dispatch, Glibc and the system OpenSSL.
import PackageDescription

let package = Package(
    name: "SciStream",
    products: [
        .executable(name: "s2cs", targets: ["s2cs"]),
        .executable(name: "s2uc", targets: ["s2uc"]),
        .executable(name: "s2bench", targets: ["s2bench"]),
    ],
    targets: [
        // The system OpenSSL (Debian: libssl-dev), with static inline wrappers for its macros.
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // Small C shims: process spawning (fork/exec with an error pipe).
        .target(name: "CSciStream"),
        // The control protocol: frames, messages, validators. Pure, no I/O.
        .target(name: "SciStreamWire"),
        // The original's gRPC service on the control port: HTTP/2 frames, HPACK, protobuf messages. Pure, no I/O.
        .target(name: "SciStreamGRPC"),
        // Errno, descriptors, sockets, the poll reactor, logging, child processes.
        .target(name: "SciStreamSystem", dependencies: ["CSciStream"]),
        // OpenSSL contexts, TLS streams, per-session key material for the data plane.
        .target(name: "SciStreamTLS", dependencies: ["COpenSSL", "SciStreamSystem"]),
        // The proxies (HAProxy, Nginx, Stunnel, Mock): configs, launch, readiness, supervision.
        .target(name: "SciStreamDataPlane", dependencies: ["COpenSSL", "SciStreamWire", "SciStreamSystem", "SciStreamTLS"]),
        // Globus Auth: token store (s2uc), token checker with introspection cache (s2cs), HTTP client, PKCE.
        .target(name: "SciStreamAuth", dependencies: ["COpenSSL", "SciStreamSystem"]),
        // The conventions both programs share: argument parsing, exit codes, console, how the lower
        // layers' errors are worded for operators.
        .target(name: "SciStreamCommandLine", dependencies: ["SciStreamWire", "SciStreamSystem", "SciStreamTLS", "SciStreamAuth"]),
        // s2uc: the control client and the user's commands. Links neither the server nor the data plane.
        .target(name: "SciStreamClient", dependencies: ["SciStreamCommandLine", "SciStreamWire", "SciStreamSystem", "SciStreamTLS", "SciStreamAuth"]),
        // Which addresses s2cs accepts: IP addresses and rules, the target policy (--allowed-targets).
        .target(name: "SciStreamPolicy", dependencies: ["SciStreamWire", "SciStreamSystem"]),
        // What s2cs shows operators: its counters in the Prometheus text format, and the HTTP listener
        // that serves them (--metrics) with its health and readiness probes.
        .target(name: "SciStreamMetrics", dependencies: ["SciStreamCommandLine", "SciStreamPolicy", "SciStreamWire", "SciStreamSystem"]),
        // s2cs: control server, session registry, port allocator, audit log, the daemon.
        .target(name: "SciStreamServer", dependencies: ["CSciStream", "SciStreamCommandLine", "SciStreamMetrics", "SciStreamPolicy", "SciStreamWire", "SciStreamSystem",
                                                        "SciStreamTLS", "SciStreamDataPlane", "SciStreamAuth", "SciStreamGRPC"]),
        .executableTarget(name: "s2cs", dependencies: ["SciStreamServer"]),
        .executableTarget(name: "s2uc", dependencies: ["SciStreamClient"]),
        // Benchmarks: drives a running s2cs over the real protocol (see bench/run, docs/benchmarks.md).
        .executableTarget(name: "s2bench", dependencies: ["COpenSSL", "SciStreamClient", "SciStreamCommandLine", "SciStreamSystem", "SciStreamWire", "SciStreamTLS"],
                          path: "bench/Sources/s2bench"),

        .testTarget(name: "WireTests", dependencies: ["SciStreamWire", "SciStreamServer", "SciStreamClient", "SciStreamCommandLine", "SciStreamGRPC"]),
        // The server's own logic (port allocation, quotas, ownership, port checks) with the Mock data
        // plane: no proxy binary, no s2cs process.
        .testTarget(name: "ServerTests", dependencies: ["SciStreamServer", "SciStreamMetrics", "SciStreamPolicy", "SciStreamDataPlane", "SciStreamWire", "SciStreamSystem", "TestPorts"]),
        .testTarget(name: "SystemTests", dependencies: ["SciStreamSystem"]),
        .testTarget(name: "TLSTests", dependencies: ["SciStreamTLS", "SciStreamSystem", "SciStreamServer", "SciStreamClient", "SciStreamCommandLine"]),
        .testTarget(name: "DataPlaneTests", dependencies: ["COpenSSL", "SciStreamDataPlane", "SciStreamTLS", "SciStreamSystem", "SciStreamWire", "SciStreamServer", "SciStreamClient", "SciStreamCommandLine", "TestPorts"]),
        .testTarget(name: "EndToEndTests", dependencies: ["COpenSSL", "SciStreamServer", "SciStreamClient", "SciStreamCommandLine", "SciStreamPolicy", "SciStreamWire", "SciStreamSystem", "SciStreamTLS", "SciStreamAuth", "SciStreamGRPC", "FakeGlobusAuth", "TestPorts"]),
        .testTarget(name: "AuthTests", dependencies: ["SciStreamAuth", "SciStreamSystem", "SciStreamServer", "SciStreamClient", "SciStreamCommandLine", "FakeGlobusAuth"]),
        // A fake Globus Auth server on loopback, for AuthTests and EndToEndTests only.
        .target(name: "FakeGlobusAuth", dependencies: ["COpenSSL"], path: "Tests/FakeGlobusAuth"),
        // Port blocks for tests: reserved per run (file locks), below the ephemeral range, never fixed.
        .target(name: "TestPorts", dependencies: ["SciStreamSystem"], path: "Tests/TestPorts"),
    ],
    swiftLanguageModes: [.v6]
)
