/// `"host:port,host:port"` as given on the s2uc command line (the producer listeners of an outbound
/// request). Entries are separated by single commas without spaces; each must pass `Endpoint.parse`.
public func parseListenerList(_ text: String) throws(ValidationError) -> [Endpoint] {
    var endpoints: [Endpoint] = []
    for entry in try splitListenerList(text) {
        endpoints.append(try Endpoint.parse(String(entry)))
    }
    return endpoints
}

/// The entries of a listener list, checked for the list's own rules (not empty, no quotes, no empty
/// entry, not too many).
func splitListenerList(_ text: String) throws(ValidationError) -> [Substring] {
    guard !text.isEmpty else { throw .emptyListenerList }
    // s2uc prints listeners as a Python list (`['192.168.10.11:5100']`); say so if one is pasted back.
    guard !text.contains("'"), !text.contains("\"") else { throw .quotedListenerList(text) }
    let entries = text.split(separator: ",", omittingEmptySubsequences: false)
    guard entries.allSatisfy({ !$0.isEmpty }) else { throw .malformedListenerList(text) }
    guard entries.count <= WireConstants.maxListCount else { throw .tooManyEntries(entries.count) }
    return entries
}
