import Foundation
import Placement

/// How long a worker of a given device profile takes for each kind of work, fitted from measurements of one model
/// on one box (`baton simulate --calibrate`) and scaled to other boxes by their profile.
///
/// Three formulas, each linear in its coefficients so that least squares fits them exactly:
/// - **Prefill pass** of prompts `T₁ … Tₙ` (one forward pass; the prompts' rows share one read of the weights):
///   `pass_overhead + Σ Tᵢ · flops_per_token / (GFLOP/s · 10⁹ · efficiency) + attention · Σ Tᵢ²`.
///   The overhead and the attention term scale with the reference GFLOP/s over the device's.
/// - **Decode step** of `B` sequences holding `C` cached positions in all:
///   `weights + B · per_sequence + C · per_context_token`. Reading the weights and the KV cache is
///   memory-bound (scaled by reference GB/s over the device's), the per-sequence work compute-bound (scaled by
///   GFLOP/s).
/// - **KV hand-off** of a `T`-token prompt: `handoff_overhead + latency + T · kv_bytes_per_token / bandwidth`, with
///   the link's bandwidth and latency from the cluster file (the slower end's link).
///
/// The JSON form (snake_case keys) is the calibration file the simulator reads.
public struct CostModel: Codable, Sendable, Equatable {
    /// The box the coefficients were measured on: what device profiles are scaled against.
    public struct Reference: Codable, Sendable, Equatable {
        public var sgemmGFLOPS: Double
        public var memoryReadGBps: Double
        /// Engine threads of the measurement.
        public var threads: Int

        public init(sgemmGFLOPS: Double, memoryReadGBps: Double, threads: Int) {
            self.sgemmGFLOPS = sgemmGFLOPS
            self.memoryReadGBps = memoryReadGBps
            self.threads = threads
        }

        enum CodingKeys: String, CodingKey {
            case sgemmGFLOPS = "sgemm_gflops", memoryReadGBps = "memory_read_gbps", threads
        }
    }

    public struct Prefill: Codable, Sendable, Equatable {
        /// Floating-point operations of one prompt token (2 × the weight multiply-accumulates).
        public var flopsPerToken: Double
        /// Share of the device's sgemm GFLOP/s the prefill path reaches (fitted).
        public var efficiency: Double
        /// Seconds of a pass that do not depend on its tokens, at the reference (fitted).
        public var passOverheadSeconds: Double
        /// Seconds per squared prompt token (attention over the prompt), at the reference (fitted).
        public var attentionSecondsPerToken2: Double

        public init(flopsPerToken: Double, efficiency: Double, passOverheadSeconds: Double,
                    attentionSecondsPerToken2: Double) {
            self.flopsPerToken = flopsPerToken
            self.efficiency = efficiency
            self.passOverheadSeconds = passOverheadSeconds
            self.attentionSecondsPerToken2 = attentionSecondsPerToken2
        }

        enum CodingKeys: String, CodingKey {
            case flopsPerToken = "flops_per_token", efficiency, passOverheadSeconds = "pass_overhead_s"
            case attentionSecondsPerToken2 = "attention_s_per_token2"
        }
    }

    public struct Decode: Codable, Sendable, Equatable {
        /// Seconds of a step spent reading the weights, at the reference bandwidth (fitted).
        public var weightSeconds: Double
        /// Seconds per sequence in the step, at the reference GFLOP/s (fitted).
        public var perSequenceSeconds: Double
        /// Seconds per cached position attended to, at the reference bandwidth (fitted).
        public var perContextTokenSeconds: Double

        public init(weightSeconds: Double, perSequenceSeconds: Double, perContextTokenSeconds: Double) {
            self.weightSeconds = weightSeconds
            self.perSequenceSeconds = perSequenceSeconds
            self.perContextTokenSeconds = perContextTokenSeconds
        }

        enum CodingKeys: String, CodingKey {
            case weightSeconds = "weight_s", perSequenceSeconds = "per_sequence_s"
            case perContextTokenSeconds = "per_context_token_s"
        }
    }

    /// The model the coefficients describe (its file name).
    public var model: String
    public var reference: Reference
    public var prefill: Prefill
    public var decode: Decode
    /// KV cache bytes of one position (all layers, K and V).
    public var kvBytesPerToken: Double
    /// Positions per KV cache block.
    public var kvBlockTokens: Int
    /// Fixed seconds of one KV hand-off besides the link's latency and bandwidth (connection, framing).
    public var handoffOverheadSeconds: Double
    /// Rows of one prefill pass: longer prompts are split into passes of this many tokens.
    public var prefillChunkTokens: Int
    /// The measurements the coefficients were fitted to, with what the fit predicts for each: how good it is.
    public var samples: [Sample]

    /// One measurement: a prefill pass (`prompts` token counts) or a decode step (`batch`, `context` in all).
    public struct Sample: Codable, Sendable, Equatable {
        public var kind: String
        public var prompts: [Int]?
        public var batch: Int?
        public var context: Int?
        public var seconds: Double
        public var fittedSeconds: Double?

        public init(kind: String, prompts: [Int]? = nil, batch: Int? = nil, context: Int? = nil, seconds: Double,
                    fittedSeconds: Double? = nil) {
            self.kind = kind
            self.prompts = prompts
            self.batch = batch
            self.context = context
            self.seconds = seconds
            self.fittedSeconds = fittedSeconds
        }

        enum CodingKeys: String, CodingKey {
            case kind, prompts, batch, context, seconds, fittedSeconds = "fitted_s"
        }
    }

    public init(model: String, reference: Reference, prefill: Prefill, decode: Decode, kvBytesPerToken: Double,
                kvBlockTokens: Int = 16, handoffOverheadSeconds: Double = 0, prefillChunkTokens: Int = 512,
                samples: [Sample] = []) {
        self.model = model
        self.reference = reference
        self.prefill = prefill
        self.decode = decode
        self.kvBytesPerToken = kvBytesPerToken
        self.kvBlockTokens = kvBlockTokens
        self.handoffOverheadSeconds = handoffOverheadSeconds
        self.prefillChunkTokens = prefillChunkTokens
        self.samples = samples
    }

    enum CodingKeys: String, CodingKey {
        case model, reference, prefill, decode, kvBytesPerToken = "kv_bytes_per_token", kvBlockTokens = "kv_block_tokens"
        case handoffOverheadSeconds = "handoff_overhead_s", prefillChunkTokens = "prefill_chunk_tokens", samples
    }

    // MARK: Times

    /// Seconds of one prefill pass over prompts (or chunks) of these token counts on `device`.
    public func prefillSeconds(tokens: Int, squaredTokens: Double, device: DeviceProfile) -> Double {
        let compute = reference.sgemmGFLOPS / max(device.sgemmGFLOPS, 1e-9)
        return (prefill.passOverheadSeconds + prefill.attentionSecondsPerToken2 * squaredTokens) * compute
            + Double(tokens) * prefill.flopsPerToken / (max(device.sgemmGFLOPS, 1e-9) * 1e9 * prefill.efficiency)
    }

    /// Seconds of one decode step of `batch` sequences holding `context` cached positions in all, on `device`.
    public func decodeStepSeconds(batch: Int, context: Int, device: DeviceProfile) -> Double {
        let memory = reference.memoryReadGBps / max(device.memoryReadGBps, 1e-9)
        let compute = reference.sgemmGFLOPS / max(device.sgemmGFLOPS, 1e-9)
        return (decode.weightSeconds + Double(context) * decode.perContextTokenSeconds) * memory
            + Double(batch) * decode.perSequenceSeconds * compute
    }

    /// Seconds to hand the KV of a `tokens`-token prompt over `link`.
    public func handoffSeconds(tokens: Int, link: LinkProfile) -> Double {
        handoffOverheadSeconds + link.latencySeconds + Double(tokens) * kvBytesPerToken / (link.bandwidthGBps * 1e9)
    }

    /// KV cache blocks a sequence of `tokens` positions holds.
    public func blocks(tokens: Int) -> Int { (tokens + kvBlockTokens - 1) / kvBlockTokens }

    // MARK: Fitting

    /// Fits the prefill and decode coefficients to `prefillSamples` (one pass each) and `decodeSamples` by least
    /// squares; negative coefficients (noise) are clamped to 0 and the rest refitted.
    /// - Throws: ``BenchmarkError`` `.invalidArgument` when there are too few distinct samples to fit.
    public static func fit(model: String, reference: Reference, flopsPerToken: Double, kvBytesPerToken: Double,
                           kvBlockTokens: Int, prefillChunkTokens: Int, prefillSamples: [Sample],
                           decodeSamples: [Sample]) throws(BenchmarkError) -> CostModel {
        // Prefill: seconds = a + b·ΣT + c·ΣT²; efficiency = flops_per_token / (GFLOP/s·10⁹·b).
        let prefillRows = prefillSamples.map { s -> [Double] in
            let t = s.prompts ?? []
            return [1, Double(t.reduce(0, +)), t.reduce(0.0) { $0 + Double($1) * Double($1) }]
        }
        let p = try nonNegativeLeastSquares(prefillRows, prefillSamples.map(\.seconds), what: "prefill")
        guard p[1] > 0 else {
            throw BenchmarkError(.invalidArgument, "prefill time does not grow with the prompt in the measurements")
        }
        // Decode: seconds = w + s·B + k·C.
        let decodeRows = decodeSamples.map { [1, Double($0.batch ?? 1), Double($0.context ?? 0)] }
        let d = try nonNegativeLeastSquares(decodeRows, decodeSamples.map(\.seconds), what: "decode")
        var result = CostModel(
            model: model, reference: reference,
            prefill: Prefill(flopsPerToken: flopsPerToken, efficiency: flopsPerToken / (reference.sgemmGFLOPS * 1e9 * p[1]),
                             passOverheadSeconds: p[0], attentionSecondsPerToken2: p[2]),
            decode: Decode(weightSeconds: d[0], perSequenceSeconds: d[1], perContextTokenSeconds: d[2]),
            kvBytesPerToken: kvBytesPerToken, kvBlockTokens: kvBlockTokens, prefillChunkTokens: prefillChunkTokens)
        let device = DeviceProfile(name: "reference", sgemmGFLOPS: reference.sgemmGFLOPS,
                                   memoryReadGBps: reference.memoryReadGBps, memoryTotalBytes: 0, memoryFreeBytes: 0,
                                   cores: reference.threads)
        result.samples = prefillSamples.map { s in
            var s = s
            let t = s.prompts ?? []
            s.fittedSeconds = result.prefillSeconds(tokens: t.reduce(0, +),
                                                    squaredTokens: t.reduce(0.0) { $0 + Double($1) * Double($1) }, device: device)
            return s
        } + decodeSamples.map { s in
            var s = s
            s.fittedSeconds = result.decodeStepSeconds(batch: s.batch ?? 1, context: s.context ?? 0, device: device)
            return s
        }
        return result
    }

    /// Least squares `rows · x ≈ y` with `x ≥ 0`: solves the normal equations, drops the most negative coefficient
    /// (fixing it at 0) and solves again until none is negative.
    static func nonNegativeLeastSquares(_ rows: [[Double]], _ y: [Double], what: String) throws(BenchmarkError) -> [Double] {
        let n = rows.first?.count ?? 0
        var free = Array(0..<n)
        while true {
            guard rows.count >= free.count, !free.isEmpty else {
                throw BenchmarkError(.invalidArgument, "\(rows.count) \(what) measurements cannot fit \(n) coefficients")
            }
            // Normal equations AᵀA x = Aᵀy over the free columns, by Gaussian elimination with partial pivoting.
            let m = free.count
            var a = [[Double]](repeating: [Double](repeating: 0, count: m + 1), count: m)
            for (row, target) in zip(rows, y) {
                for i in 0..<m {
                    for j in 0..<m { a[i][j] += row[free[i]] * row[free[j]] }
                    a[i][m] += row[free[i]] * target
                }
            }
            for col in 0..<m {
                let pivot = (col..<m).max { abs(a[$0][col]) < abs(a[$1][col]) }!
                guard abs(a[pivot][col]) > 1e-300 else {
                    throw BenchmarkError(.invalidArgument, "the \(what) measurements do not vary enough to fit \(n) coefficients")
                }
                a.swapAt(col, pivot)
                for r in 0..<m where r != col {
                    let f = a[r][col] / a[col][col]
                    for c in col...m { a[r][c] -= f * a[col][c] }
                }
            }
            var x = [Double](repeating: 0, count: n)
            for i in 0..<m { x[free[i]] = a[i][m] / a[i][i] }
            guard let worst = free.min(by: { x[$0] < x[$1] }), x[worst] < 0 else { return x }
            free.removeAll { $0 == worst }
        }
    }

    // MARK: File

    /// Reads a calibration file written by `baton simulate --calibrate`.
    public static func load(path: String) throws(BenchmarkError) -> CostModel {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw BenchmarkError(.invalidArgument, "cannot read the calibration file \(path)", cause: error)
        }
        do { return try JSONDecoder().decode(CostModel.self, from: data) } catch {
            throw BenchmarkError(.invalidArgument, "\(path) is not a calibration file from baton simulate --calibrate",
                                 cause: CalibrationDecodingError(description: "\(error)"))
        }
    }

    /// Writes the calibration file (pretty JSON).
    public func save(path: String) throws(BenchmarkError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { try encoder.encode(self).write(to: URL(fileURLWithPath: path)) } catch {
            throw BenchmarkError(.invalidArgument, "cannot write the calibration file \(path)", cause: error)
        }
    }
}

/// A decoding error's text (Foundation's decoding errors are not `Sendable`).
struct CalibrationDecodingError: Error, Sendable, CustomStringConvertible {
    let description: String
}

/// A worker's network link for KV hand-offs: the slower end of a pair sets the pace.
public struct LinkProfile: Sendable, Equatable {
    /// GB/s (10⁹ bytes per second).
    public var bandwidthGBps: Double
    public var latencySeconds: Double

    public init(bandwidthGBps: Double, latencySeconds: Double) {
        self.bandwidthGBps = bandwidthGBps
        self.latencySeconds = latencySeconds
    }

    /// The link between two workers: the lower bandwidth and the sum of latencies (one hop each way to the switch).
    public static func between(_ a: LinkProfile, _ b: LinkProfile) -> LinkProfile {
        LinkProfile(bandwidthGBps: min(a.bandwidthGBps, b.bandwidthGBps), latencySeconds: a.latencySeconds + b.latencySeconds)
    }
}
