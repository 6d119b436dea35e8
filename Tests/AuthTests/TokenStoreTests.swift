import Foundation
import Testing
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
@testable import SciStreamAuth

func temporaryHome(_ name: String = "auth") -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("scistream-\(name)-\(UUID().uuidString.prefix(8))").path
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func mode(_ path: String) -> Int {
    var info = stat()
    guard stat(path, &info) == 0 else { return -1 }
    return Int(info.st_mode & 0o777)
}

let sampleToken = StoredToken(accessToken: "AgAccess", refreshToken: "AgRefresh", expiresAt: 2_000_000_000,
                              resourceServer: "abc", scope: "https://auth.globus.org/scopes/abc/scistream")

@Suite struct TokenStoreTests {
    @Test func standardStoreLivesInHomeDotScistream() throws {
        let store = try TokenStore.standard(environment: ["HOME": "/home/ada/"])
        #expect(store.folder == "/home/ada/.scistream")
        #expect(store.path == "/home/ada/.scistream/tokens.json")
        #expect(throws: AuthError.self) { try TokenStore.standard(environment: ["HOME": "relative"]) }
    }

    @Test func saveThenLoadRoundTripsWithMode0600In0700() throws {
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let store = try TokenStore.standard(environment: ["HOME": home])
        #expect(try store.load() == TokenFile())
        var file = TokenFile()
        file.tokens["abc"] = sampleToken
        file.addresses["127.0.0.1:5000"] = "abc"
        let old = umask(0)  // the most permissive umask must not widen the modes
        defer { umask(old) }
        try store.save(file)
        #expect(try store.load() == file)
        #expect(mode(store.folder) == 0o700)
        #expect(mode(store.path) == 0o600)
        // No temporary file is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.folder) == ["tokens.json"])
        // The format is plain JSON with the documented keys.
        let text = try String(contentsOfFile: store.path, encoding: .utf8)
        #expect(text.contains("\"access_token\" : \"AgAccess\"") && text.contains("\"expires_at\" : 2000000000") && text.contains("\"127.0.0.1:5000\" : \"abc\""))
    }

    @Test func savingNothingRemovesTheFile() throws {
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let store = try TokenStore.standard(environment: ["HOME": home])
        var file = TokenFile()
        file.tokens["abc"] = sampleToken
        try store.save(file)
        try store.save(TokenFile())
        #expect(!FileManager.default.fileExists(atPath: store.path))
        #expect(FileManager.default.fileExists(atPath: store.folder))
    }

    @Test func looseModesAreTightenedWithAWarning() throws {
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let warnings = Mutex<[String]>([])
        let store = try TokenStore.standard(environment: ["HOME": home]) { line in warnings.withLock { $0.append(line) } }
        var file = TokenFile()
        file.tokens["abc"] = sampleToken
        try store.save(file)
        chmod(store.folder, 0o755)
        chmod(store.path, 0o644)
        #expect(try store.load() == file)
        #expect(mode(store.path) == 0o600)
        #expect(warnings.withLock { $0 }.first?.contains("was readable by others (mode 0644); set it to 0600") == true)
        try store.prepareFolder()
        #expect(mode(store.folder) == 0o700)
    }

    @Test func aCorruptFileIsNamedWithWhatToDo() throws {
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let store = try TokenStore.standard(environment: ["HOME": home])
        try store.prepareFolder()
        _ = FileManager.default.createFile(atPath: store.path, contents: Data("{not json".utf8), attributes: [.posixPermissions: 0o600])
        do {
            _ = try store.load()
            Issue.record("a corrupt file loaded")
        } catch {
            #expect(error.description.hasPrefix("token file \(store.path): is not a valid token file ("))
            #expect(error.description.hasSuffix("delete it and log in again"))
        }
    }

    @Test func aSymlinkIsNotFollowed() throws {
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let store = try TokenStore.standard(environment: ["HOME": home])
        try store.prepareFolder()
        _ = FileManager.default.createFile(atPath: home + "/elsewhere", contents: Data("{}".utf8))
        symlink(home + "/elsewhere", store.path)
        #expect(throws: AuthError.tokenFile(path: store.path, reason: "is a symbolic link; refusing to follow it")) { try store.load() }
    }

    @Test func updatesFromConcurrentProcessesDoNotLoseEachOther() async throws {
        let home = temporaryHome()
        defer { try? FileManager.default.removeItem(atPath: home) }
        let store = try TokenStore.standard(environment: ["HOME": home])
        // Separate descriptors lock independently, as separate s2uc processes would.
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask {
                    try? await store.update { file in
                        file.addresses["10.0.0.\(index):5000"] = "scope\(index)"
                        try await Task.sleep(for: .milliseconds(5))
                    }
                }
            }
        }
        #expect(try store.load().addresses.count == 20)
    }
}
