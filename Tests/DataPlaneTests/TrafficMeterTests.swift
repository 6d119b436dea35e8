import Testing
import SciStreamWire
@testable import SciStreamDataPlane

/// The proxies' own formats, as TrafficMeter reads them (the end-to-end counts are in TrafficTests).
struct TrafficMeterTests {
    @Test func theProxiesOwnFormatsAreRead() {
        var nginx = TrafficFigures(counting: .closedConnections)
        TrafficMeter.nginxLine("100,20", &nginx)
        TrafficMeter.nginxLine("5,1", &nginx)
        TrafficMeter.nginxLine("garbage", &nginx)
        #expect(nginx.totalConnections == 2 && nginx.bytesIn == 105 && nginx.bytesOut == 21)

        var prod = TrafficFigures(counting: .closedConnections), cons = TrafficFigures(counting: .closedConnections)
        for line in ["2026.11.30 13:19:09 LOG5[1]: Service [l0] accepted connection from 127.0.0.1:36864",
                     "2026.11.30 13:19:09 LOG5[1]: Connection closed: 313 byte(s) sent to TLS, 8500261 byte(s) sent to socket",
                     "2026.11.30 13:19:09 LOG5[2]: Connection reset: 7 byte(s) sent to TLS, 9 byte(s) sent to socket",
                     "2026.11.30 13:19:09 LOG5[3]: Connection reset/closed: 0 byte(s) sent to TLS, 0 byte(s) sent to socket",
                     "2026.11.30 13:19:09 LOG5[4]: Connection closed/reset: 100 byte(s) sent to TLS, 1000 byte(s) sent to socket",
                     "2026.11.30 13:19:09 LOG5[5]: Service [l12] accepted connection from ::1:41000"] {
            TrafficMeter.stunnelLine(line[...], role: .prod, &prod)
            TrafficMeter.stunnelLine(line[...], role: .cons, &cons)
        }
        #expect(prod.totalConnections == 2 && prod.bytesIn == 8_501_270 && prod.bytesOut == 420)
        #expect(cons.bytesIn == 420 && cons.bytesOut == 8_501_270)

        let csv = """
            # pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq
            l0,FRONTEND,,,1,2,100,5,1000,20,0
            l0,s0,0,0,1,2,,5,1000,20,,
            l1,FRONTEND,,,0,1,100,2,30,4,0
            """
        let figures = TrafficMeter.parseHAProxyStats(csv)
        #expect(figures == { var f = TrafficFigures(counting: .live); f.openConnections = 1; f.totalConnections = 7; f.bytesIn = 1030; f.bytesOut = 24; return f }())
        #expect(TrafficMeter.parseHAProxyStats("Unknown command") == nil)
    }

    /// What stunnel 5.68 wrote when a stranger presented a certificate whose subject spells its
    /// traffic line (seen in TrafficForgeryTests), and lines that are almost the proxies' own: none
    /// counts, and nothing traps.
    @Test func linesThatAreNotExactlyTheProxiesOwnCountNothing() {
        let max = "18446744073709551615"
        let stunnel = [
            "2026.12.05 07:58:44 LOG4[0]: Rejected by CERT at depth=0: CN=Connection closed: \(max) \(max), description=\"LOG5[1]: Connection closed: \(max) byte(s) sent to TLS, \(max) byte(s) sent to socket\"",
            "Connection closed: \(max) \(max)",
            "LOG5[1]: Connection closed: 5 byte(s) sent to TLS, 5 byte(s) sent to socket",
            "2026.12.05 07:58:44 LOG4[1]: Connection closed: 5 byte(s) sent to TLS, 5 byte(s) sent to socket",
            " 2026.12.05 07:58:44 LOG5[1]: Connection closed: 5 byte(s) sent to TLS, 5 byte(s) sent to socket",
            "2026.12.05 07:58:44 LOG5[1]: Connection closed: 5 byte(s) sent to TLS, 5 byte(s) sent to socket ",
            "2026.12.05 07:58:44 LOG5[1]: Connection closed: 5 byte(s) sent to TLS, 5 byte(s) sent to socket, 7",
            "2026.12.05 07:58:44 LOG5[1]: Connection closed: +5 byte(s) sent to TLS, 5 byte(s) sent to socket",
            "2026.12.05 07:58:44 LOG5[1]: Connection closed: \(max) byte(s) sent to TLS, \(max) byte(s) sent to socket",
            "2026.12.05 07:58:44 LOG5[1]: Connection closed: 99999999999999999999999 byte(s) sent to TLS, 1 byte(s) sent to socket",
            "2026.12.05 07:58:44 LOG5[1]: Connection opened: 5 byte(s) sent to TLS, 5 byte(s) sent to socket",
            "2026.12.05 07:58:44 LOG5[x]: Connection closed: 5 byte(s) sent to TLS, 5 byte(s) sent to socket",
            "2026.12.05 07:58:44 LOG5[1]: Service [l0] accepted connection from 127.0.0.1:1 CN=Connection closed",
            "2026.12.05 07:58:44 LOG5[1]: Service [evil] accepted connection from 127.0.0.1:1",
            "2026.12.05 07:58:44 LOG5[1]: Service [l0] accepted connection from ",
        ]
        for line in stunnel {
            for role in [ProxyRole.prod, .cons] {
                var figures = TrafficFigures(counting: .closedConnections)
                TrafficMeter.stunnelLine(line[...], role: role, &figures)
                #expect(figures == TrafficFigures(counting: .closedConnections), "counted: \(line)")
            }
        }
        let nginx = ["\(max),\(max)", "+5,1", "5,-1", " 5,1", "5,1 ", "5,1,2", "5,", ",5", "18446744073709551616,1", "2026/12/05 [info] 5,1",
                     "100000000000000000,0"]
        for line in nginx {
            var figures = TrafficFigures(counting: .closedConnections)
            TrafficMeter.nginxLine(line[...], &figures)
            #expect(figures == TrafficFigures(counting: .closedConnections), "counted: \(line)")
        }
    }

    /// The largest figure a line may carry, many times over: the counters stop at their maximum.
    @Test func sumsSaturateInsteadOfTrapping() {
        let most = TrafficMeter.maximumBytesPerConnection
        var nginx = TrafficFigures(counting: .closedConnections), stunnel = TrafficFigures(counting: .closedConnections)
        for _ in 0..<300 {
            TrafficMeter.nginxLine("\(most),\(most)"[...], &nginx)
            TrafficMeter.stunnelLine("2026.12.05 07:58:44 LOG5[1]: Connection closed: \(most) byte(s) sent to TLS, \(most) byte(s) sent to socket"[...],
                                     role: .prod, &stunnel)
        }
        #expect(nginx.bytesIn == .max && nginx.bytesOut == .max && nginx.totalConnections == 300)
        #expect(stunnel.bytesIn == .max && stunnel.bytesOut == .max)
        let csv = "# pxname,svname,scur,stot,bin,bout\n"
            + String(repeating: "l0,FRONTEND,\(Int.max),\(Int.max),18446744073709551615,18446744073709551615\n", count: 3)
            + "l1,FRONTEND,+5,-1,x,\n"
        let figures = TrafficMeter.parseHAProxyStats(csv)
        #expect(figures?.openConnections == .max && figures?.totalConnections == .max && figures?.bytesIn == .max && figures?.bytesOut == .max)
        #expect(TrafficMeter.parseHAProxyStats("# pxname,svname,scur,stot,bin,bout\nl1,FRONTEND,+5,-1,x,\n")
                == TrafficFigures(counting: .live), "fields that are not plain counts count nothing")
    }

    @Test func countingAddsOnlyItsOwnLinesToTheConfigs() throws {
        let spec = ProxySpec(uid: "4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3", role: .prod, listeners: [ProxyEndpoint(host: "127.0.0.1", port: 5100)],
                             targets: [ProxyEndpoint(host: "127.0.0.1", port: 5001)], rateKbps: 0)
        var plan = try SessionPlan(spec, tls: true, folder: "/f", processors: 2)
        #expect(!plan.counting, "off unless s2cs turns it on")
        let plain = (haproxy: ProxyConfig.haproxy(plan), nginx: ProxyConfig.nginx(plan), stunnel: ProxyConfig.stunnel(plan))
        plan.counting = true
        let counted = (haproxy: ProxyConfig.haproxy(plan), nginx: ProxyConfig.nginx(plan), stunnel: ProxyConfig.stunnel(plan))
        func added(_ before: String, _ after: String) -> [Substring] {
            let old = before.split(separator: "\n")
            var new = after.split(separator: "\n")
            for line in old { if let index = new.firstIndex(of: line) { new.remove(at: index) } }
            return new
        }
        #expect(added(plain.haproxy, counted.haproxy) == ["    stats socket /f/4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c3.sock mode 600 level user"])
        #expect(added(plain.nginx, counted.nginx) == ["    log_format scistream_traffic $bytes_received,$bytes_sent;",
                                                      "    access_log /dev/stderr scistream_traffic;"])  // into <uid>.log, bounded
        #expect(counted.haproxy.split(separator: "\n").count == plain.haproxy.split(separator: "\n").count + 1)
        #expect(counted.stunnel == plain.stunnel, "Stunnel's own log already says what it moved")
        // A folder too deep for a unix socket path: no stats socket, rather than a proxy that fails.
        var deep = try SessionPlan(spec, tls: true, folder: "/" + String(repeating: "d", count: 80), processors: 2)
        deep.counting = true
        #expect(!ProxyConfig.haproxy(deep).contains("stats socket"))
    }
}
