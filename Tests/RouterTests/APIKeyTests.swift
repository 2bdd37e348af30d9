import Foundation
import Hummingbird
import HummingbirdTesting
import Router
import Testing

@Suite("API keys")
struct APIKeyTests {
    @Test("a key file allows comments, blank lines and surrounding whitespace")
    func parsesKeyFile() throws {
        let keys = try APIKeySet.parse("# team keys\n\nsk-one\n   sk-two  \n# sk-commented\n", fileName: "keys.txt")
        #expect(keys.keys == ["sk-one", "sk-two"])
        #expect(keys.accepts(authorization: "Bearer sk-two"))
        #expect(keys.accepts(authorization: "bearer sk-one"))
        #expect(!keys.accepts(authorization: "Bearer sk-commented"))
        #expect(!keys.accepts(authorization: "Bearer sk-on"))
        #expect(!keys.accepts(authorization: "sk-one"))
        #expect(!keys.accepts(authorization: nil))
    }

    @Test("a key file error names the file and line")
    func keyFileErrors() throws {
        let error = #expect(throws: RouterError.self) {
            try APIKeySet.parse("sk-one\nsk two\n", fileName: "keys.txt")
        }
        #expect(error?.message == "keys.txt:2: an API key may not contain whitespace")
        #expect(throws: RouterError.self) { try APIKeySet.parse("# only comments\n", fileName: "keys.txt") }
        #expect(throws: RouterError.self) { try APIKeySet.load(path: "/nonexistent/baton-keys.txt") }
    }

    @Test("the key file named in the configuration is loaded by the application builder")
    func loadsConfiguredFile() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("baton-router-keys-\(UUID()).txt").path
        try "# keys\nsk-from-file\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        var configuration = Fixtures.configuration()
        configuration.apiKeysFile = path
        let (app, _, _) = try Fixtures.application(configuration: configuration)
        try await app.test(.router) { client in
            let denied = try await client.execute(uri: "/v1/models", method: .get)
            #expect(denied.status == .unauthorized)
            let allowed = try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer sk-from-file"])
            #expect(allowed.status == .ok)
        }
    }

    @Test("with keys configured the API needs a valid bearer key, while health and metrics stay open")
    func enforcesKeys() async throws {
        let (app, _, _) = try Fixtures.application(apiKeys: APIKeySet(keys: ["sk-valid"]))
        try await app.test(.router) { client in
            let body = try jsonBody(ChatCompletionsTests.chatBody())
            let missing = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: jsonHeaders, body: body)
            try expectOpenAIError(missing, status: .unauthorized, code: "invalid_api_key", param: nil, messageContains: "didn't provide")
            var wrongHeaders = jsonHeaders
            wrongHeaders[.authorization] = "Bearer sk-wrong"
            let wrong = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: wrongHeaders, body: body)
            try expectOpenAIError(wrong, status: .unauthorized, code: "invalid_api_key", param: nil, messageContains: "Incorrect API key")
            var goodHeaders = jsonHeaders
            goodHeaders[.authorization] = "Bearer sk-valid"
            let good = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: goodHeaders, body: body)
            #expect(good.status == .ok)
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/metrics", method: .get).status == .ok)
        }
    }
}
