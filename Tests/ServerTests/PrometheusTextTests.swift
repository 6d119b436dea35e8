import Testing
@testable import SciStreamServer
@testable import SciStreamMetrics

/// The exposition text byte for byte: label values and HELP text escaped as the format wants, and
/// values without a byte to escape copied as they are.
struct PrometheusTextTests {
    @Test func labelValuesEscapeBackslashQuoteAndLineFeed() {
        #expect(PrometheusText.escape("4f8583bc") == "4f8583bc")
        #expect(PrometheusText.escape("a\\b\"c\nd") == "a\\\\b\\\"c\\nd")
        #expect(PrometheusText.escape("é\"é") == "é\\\"é")
    }

    @Test func samplesAndFamiliesAreWrittenLineByLine() {
        var text = PrometheusText()
        text.family("s2cs_x", "gauge", "Help with \"quotes\", a \\ and\na line feed.")
        text.sample("s2cs_x", [:], 3)
        text.sample("s2cs_x", ["session": "4f8583bc", "role": "PROD"], 0.025)
        text.sample("s2cs_x", ["session": "a\"b"], 1)
        #expect(text.text == """
            # HELP s2cs_x Help with "quotes", a \\\\ and\\na line feed.
            # TYPE s2cs_x gauge
            s2cs_x 3
            s2cs_x{session="4f8583bc",role="PROD"} 0.025
            s2cs_x{session="a\\"b"} 1

            """)
    }
}
