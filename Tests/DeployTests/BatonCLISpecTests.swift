import Testing

@Suite("The baton CLI table the deploy files are checked against")
struct BatonCLISpecTests {
    func problems(_ line: String) throws -> String? {
        let words = try #require(try ShellWords.batonCommands(in: line).first)
        if case .failure(let failure) = BatonCLISpec.parse(words, source: "test") { return failure.description }
        return nil
    }

    @Test("a command line the spec allows parses, with --flag=value and --flag value alike")
    func validLine() throws {
        #expect(try problems("baton worker --role=decode --placement p:7400 --listen 0.0.0.0:7410 --insecure") == nil)
        let line = "exec baton cluster status --placement p:1 --insecure --json"
        let words = try #require(try ShellWords.batonCommands(in: line).first)
        let invocation = try BatonCLISpec.parse(words, source: "test").get()
        #expect(invocation.subcommand == "cluster status")
        #expect(invocation.flags.map(\.name) == ["--placement", "--insecure", "--json"])
    }

    @Test("an unknown flag, a missing value, a bad role, a missing identity and an unknown subcommand are reported",
          arguments: [
              ("baton worker --role prefill --placement p:1 --listen l:2 --insecure --gpus 2", "--gpus is not a flag"),
              ("baton router --placement --insecure", "--placement needs a value"),
              ("baton worker --role gpu --placement p:1 --listen l:2 --insecure", "--role gpu is not one of"),
              ("baton router --placement p:1", "give either --certs and --node, or --insecure"),
              ("baton router --placement p:1 --certs c --node n --insecure", "give either --certs and --node"),
              ("baton placement --listen 0.0.0.0:7400 --insecure", "--config is missing"),
              ("baton certs --out d --nodes a --nodes b", "--nodes given more than once"),
              ("baton serve-cluster --port 1", "is not a subcommand"),
              ("baton certs --out d extra", "unexpected argument 'extra'"),
          ])
    func badLines(line: String, expected: String) throws {
        let problem = try #require(try problems(line), "accepted: \(line)")
        #expect(problem.contains(expected), "\(problem)")
    }

    @Test("shell text splits into words and operators as sh would")
    func shellWords() throws {
        let script = """
            printf 'name: p-%s\\n' "$(hostname)" > /tmp/w.yaml # a comment
            test -s ca.pem || exec baton certs --out "/certs dir" \\
              --nodes a,b; echo done
            """
        #expect(try ShellWords.batonCommands(in: script) == [["baton", "certs", "--out", "/certs dir", "--nodes", "a,b"]])
        #expect(try ShellWords.tokens("a \"$(x | y 'z')\"b&&c") == [
            .word("a"), .word("$(x | y 'z')b"), .operator("&&"), .word("c"),
        ])
        #expect(throws: DeployCheckFailure.self) { try ShellWords.tokens("echo 'open") }
    }
}
