import Foundation
import Testing

@Suite("The baton CLI table the deploy files are checked against")
struct BatonCLISpecTests {
    func problems(_ line: String) throws -> String? {
        let words = try #require(try ShellWords.batonCommands(in: line).first)
        if case .failure(let failure) = BatonCLISpec.parse(words, source: "test") { return failure.description }
        return nil
    }

    @Test("every flag in the table is one the built baton accepts, so the table cannot drift from the CLI")
    func tableMatchesTheBinary() throws {
        let candidates = ["debug", "release"].map { DeployFiles.url(".build/\($0)/baton") }
        let baton = try #require(
            candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) },
            "no built baton at \(candidates.map(\.path)); run swift build first")
        for (name, subcommand) in BatonCLISpec.subcommands.sorted(by: { $0.key < $1.key }) {
            let words = name.split(separator: " ").map(String.init)
            var help = try ToolRun.run(baton, words + ["--help"])
            // A command with a default subcommand (`baton placement` is `baton placement serve`) lists that one's flags.
            if let line = help.output.split(separator: "\n").first(where: { $0.contains("(default)") }),
                let sub = line.split(separator: " ").first {
                help = try ToolRun.run(baton, words + [String(sub), "--help"])
            }
            #expect(help.status == 0, "baton \(name) --help: \(help.output)")
            // A flag as the help lists it: followed by a space, a comma (an alias) or the line's end.
            let listed = Set(help.output.split(whereSeparator: { " ,\n<=".contains($0) }).filter { $0.hasPrefix("--") }.map(String.init))
            for flag in subcommand.valueFlags.union(subcommand.booleanFlags).union(subcommand.required).sorted() {
                #expect(listed.contains(flag), "baton \(name) has no \(flag)")
            }
        }
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
