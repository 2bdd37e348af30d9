import ArgumentParser
import Foundation
import GGUF
import Tokenization

/// `baton bench tokenize`: encode speed on a few MB of varied text, on one thread. A measurement to
/// report, never a pass/fail threshold.
struct BenchTokenizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Measure tokenizer encode speed (MB/s, one thread) on a few MB of varied text.",
        discussion: """
            The text is generated deterministically (English prose, code, numbers, CJK, Cyrillic, Arabic, \
            Hindi, emoji, whitespace runs) unless --file is given. Each repetition encodes the whole text \
            once; the median and best repetition are reported, by wall-clock time and by the thread's CPU \
            time (which stays meaningful on a busy machine). With --json the last line is one JSON object \
            with the key encode_mb_per_second (the wall-clock median).
            """
    )

    @OptionGroup var modelOptions: ModelOptions

    @Option(name: .long, help: "Size of the generated text in MB (10^6 bytes).")
    var megabytes: Double = 4

    @Option(name: .long, help: "Encode a UTF-8 text file instead of the generated text.")
    var file: String?

    @Option(name: .long, help: "Timed repetitions (after one untimed warm-up).")
    var repetitions: Int = 5

    @Flag(name: .long, help: "Print one JSON object on the last line.")
    var json = false

    func validate() throws {
        guard megabytes > 0, megabytes <= 1000 else { throw ValidationError("--megabytes must be in (0, 1000]") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
    }

    func run() async throws {
        let text: String
        if let file {
            guard let contents = try? String(contentsOfFile: file, encoding: .utf8) else {
                FileHandle.standardError.write(Data("baton bench tokenize: cannot read UTF-8 text from \(file)\n".utf8))
                throw ExitCode.failure
            }
            text = contents
        } else {
            text = TokenizerBenchmarkText.generate(bytes: Int(megabytes * 1_000_000))
        }
        let clock = ContinuousClock()
        let loadStart = clock.now
        let tokenizer = try TokenizeCommand.loadTokenizer(modelOptions, command: "bench tokenize")
        let loadSeconds = ((clock.now - loadStart) / .seconds(1))

        let byteCount = text.utf8.count
        var tokenCount = tokenizer.encode(text, addSpecial: false).count
        let megabytes = Double(byteCount) / 1e6
        var rates: [Double] = []
        var cpuRates: [Double] = []
        for _ in 0..<repetitions {
            let start = clock.now
            let cpuStart = Self.threadCPUSeconds()
            tokenCount = tokenizer.encode(text, addSpecial: false).count
            cpuRates.append(megabytes / (Self.threadCPUSeconds() - cpuStart))
            rates.append(megabytes / ((clock.now - start) / .seconds(1)))
        }
        rates.sort()
        cpuRates.sort()
        let median = rates[rates.count / 2]
        let best = rates.last!
        let cpuMedian = cpuRates[cpuRates.count / 2]
        print("text: \(String(format: "%.2f", Double(byteCount) / 1e6)) MB, \(tokenCount) tokens "
              + "(\(String(format: "%.2f", Double(byteCount) / Double(max(tokenCount, 1)))) bytes/token)")
        print("tokenizer load: \(String(format: "%.0f", loadSeconds * 1000)) ms")
        print("encode: median \(String(format: "%.1f", median)) MB/s, best \(String(format: "%.1f", best)) MB/s "
              + "over \(repetitions) repetitions, one thread "
              + "(by CPU time: median \(String(format: "%.1f", cpuMedian)) MB/s)")
        if json {
            let fields: [String] = [
                "\"encode_mb_per_second\":\(String(format: "%.3f", median))",
                "\"encode_mb_per_second_best\":\(String(format: "%.3f", best))",
                "\"encode_mb_per_second_cpu\":\(String(format: "%.3f", cpuMedian))",
                "\"text_bytes\":\(byteCount)",
                "\"tokens\":\(tokenCount)",
                "\"repetitions\":\(repetitions)",
                "\"load_seconds\":\(String(format: "%.4f", loadSeconds))",
            ]
            print("{" + fields.joined(separator: ",") + "}")
        }
    }


    /// CPU time consumed by the calling thread, in seconds.
    static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}

/// Deterministic, varied benchmark text: mostly English prose, with code, numbers and other scripts mixed
/// in, so that every pre-tokenizer branch and both BPE paths (short and long words) are exercised.
enum TokenizerBenchmarkText {
    static func generate(bytes target: Int) -> String {
        var random = Generator(seed: 0x5EED_BA70)
        var text = ""
        text.reserveCapacity(target + 1024)
        while text.utf8.count < target {
            let roll = random.next() % 100
            switch roll {
            case 0..<60: text += prose(&random)
            case 60..<80: text += code(&random)
            case 80..<85: text += numbers(&random)
            case 85..<95: text += multilingual(&random)
            default: text += symbols(&random)
            }
        }
        return text
    }

    private static let words = """
        the of and to in is was that for it with as his on be at by had are but from or have an they which \
        one you were her all she there would their we him been has when who will more no if out so said what \
        up its about into than them can only other new some could time these two may then do first any my now \
        such like our over man me even most made after also did many before must through back years where much \
        your way well down should because each just those people how too little state good very make world still \
        own see men work long get here between both life being under never day same another know while last \
        might us great old year off come since against go came right used take three prefill decode bandwidth \
        compute cluster token tokenizer latency throughput memory cache transformer attention layer inference \
        model server request stream batch kernel quantized matrix vector network transfer handoff
        """.split(separator: " ").map(String.init)

    private static let foreign = [
        "你好世界", "自然语言处理", "今天天气很好", "日本語のテキスト", "カタカナ", "한국어", "안녕하세요",
        "Привет", "мир", "предложение", "مرحبا", "بالعالم", "नमस्ते", "दुनिया", "สวัสดี", "Γειά", "Κόσμε",
        "Straße", "naïve", "façade", "jalapeño", "Łódź",
    ]

    private static let emoji = ["😀", "👋", "🌍", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "❤️", "🔥", "✔︎", "1️⃣", "→", "∀x∈ℝ", "©", "…"]

    private static func pick<T>(_ items: [T], _ random: inout Generator) -> T {
        items[Int(random.next() % UInt64(items.count))]
    }

    private static func prose(_ random: inout Generator) -> String {
        var sentence = ""
        let count = 6 + Int(random.next() % 18)
        for index in 0..<count {
            var word = pick(words, &random)
            if index == 0 { word = word.prefix(1).uppercased() + word.dropFirst() }
            if random.next() % 40 == 0 { word = word.uppercased() }
            if random.next() % 25 == 0 { word += pick(["'s", "'t", "'re", "'ll", "n't"], &random) }
            sentence += (index == 0 ? "" : " ") + word
            if random.next() % 12 == 0 { sentence += pick([",", ";", ":", " -", " (see above)"], &random) }
        }
        sentence += pick([". ", ". ", ". ", "? ", "! ", ".\n", ".\n\n", ".\r\n"], &random)
        return sentence
    }

    private static func code(_ random: inout Generator) -> String {
        let name = pick(words, &random) + "_" + pick(words, &random)
        let number = random.next() % 10_000
        switch random.next() % 4 {
        case 0:
            return "def \(name)(x, y=\(number)):\n    return x * y + \(number % 97)\n\n"
        case 1:
            return "for (int i = 0; i < \(number); ++i) {\n\t\(name)[i] += i >> 2;\n}\n"
        case 2:
            return "let \(name): [String: Int] = [\"\(pick(words, &random))\": \(number)]  // \(pick(words, &random))\n"
        default:
            return "{\"\(name)\": [\(number), \(number * 3), null], \"ok\": true}\n"
        }
    }

    private static func numbers(_ random: inout Generator) -> String {
        var digits = ""
        for _ in 0..<(4 + Int(random.next() % 40)) { digits += String(random.next() % 10) }
        let month = 1 + random.next() % 12, day = 1 + random.next() % 9
        return "\(random.next() % 1000).\(random.next() % 100) \(digits) 2024-\(month)-0\(day) "
    }

    private static func multilingual(_ random: inout Generator) -> String {
        var line = ""
        for _ in 0..<(3 + Int(random.next() % 8)) { line += pick(foreign, &random) + pick([" ", "，", "、", " "], &random) }
        return line + "\n"
    }

    private static func symbols(_ random: inout Generator) -> String {
        var line = ""
        for _ in 0..<(2 + Int(random.next() % 6)) { line += pick(emoji, &random) + pick([" ", "  ", "\t", "    "], &random) }
        return line + pick(["\n", "\r\n", "   \n", "\n\n\n"], &random)
    }

    /// SplitMix64, seeded, so the benchmark text is the same on every machine and run.
    struct Generator {
        private var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}
