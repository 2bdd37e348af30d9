import ClusterProtocol

/// Element type of the KV cache, as the transport names it (mirrors the engine's `KVDataType`).
public enum KVElementType: String, Sendable, Equatable, Codable {
    case f16, f32

    public var byteWidth: Int { self == .f16 ? 2 : 4 }
}

/// What makes one worker's KV usable by another: the same architecture, model, tokenizer, KV layout and
/// protocol. Checked at the handshake, before a byte of KV moves.
public struct KVCompatibilityIdentity: Sendable, Equatable, Codable {
    public var protocolVersion: UInt32
    /// The model's graph (`general.architecture`: llama, qwen2, qwen3, gemma3): KV written by one graph means
    /// nothing to another even where the shapes agree.
    public var architecture: String
    /// The engine's fingerprint of the model weights and hyper-parameters.
    public var modelFingerprint: String
    public var tokenizerHash: String
    public var layers: Int
    public var kvHeads: Int
    public var headDim: Int
    public var elementType: KVElementType
    /// Tokens per KV block.
    public var blockSize: Int

    public init(
        protocolVersion: UInt32 = BatonProtocol.version, architecture: String = "", modelFingerprint: String,
        tokenizerHash: String, layers: Int, kvHeads: Int, headDim: Int, elementType: KVElementType, blockSize: Int
    ) {
        self.protocolVersion = protocolVersion
        self.architecture = architecture
        self.modelFingerprint = modelFingerprint
        self.tokenizerHash = tokenizerHash
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.elementType = elementType
        self.blockSize = blockSize
    }

    /// Bytes of one layer of a sequence of `tokenCount` tokens from position `firstToken` (a multiple of the block
    /// size) on: whole blocks of K and V.
    public func layerByteCount(tokenCount: Int, from firstToken: Int = 0) -> Int {
        let blocks = (tokenCount + blockSize - 1) / blockSize - firstToken / blockSize
        return max(blocks, 0) * 2 * kvHeads * blockSize * headDim * elementType.byteWidth
    }

    /// Every difference between `self` (local) and `peer`, in words; empty when compatible.
    public func differences(from peer: KVCompatibilityIdentity) -> [String] {
        var differences: [String] = []
        func check<T: Equatable>(_ name: String, _ mine: T, _ theirs: T) {
            if mine != theirs { differences.append("\(name): local \(mine), peer \(theirs)") }
        }
        check("protocol version", protocolVersion, peer.protocolVersion)
        check("architecture", architecture, peer.architecture)
        check("model fingerprint", modelFingerprint, peer.modelFingerprint)
        check("tokenizer hash", tokenizerHash, peer.tokenizerHash)
        check("layers", layers, peer.layers)
        check("KV heads", kvHeads, peer.kvHeads)
        check("head dim", headDim, peer.headDim)
        check("element type", elementType, peer.elementType)
        check("block size", blockSize, peer.blockSize)
        return differences
    }

    /// Throws `.invalidArgument` unless every dimension is positive.
    public func validated() throws(KVTransportError) -> Self {
        guard layers > 0, kvHeads > 0, headDim > 0, blockSize > 0 else {
            throw KVTransportError(
                .invalidArgument,
                "KV layout needs positive dimensions (layers \(layers), KV heads \(kvHeads), head dim \(headDim), block size \(blockSize))")
        }
        return self
    }
}

/// What a sender announces about one transfer.
public struct KVTransferRequest: Sendable, Equatable {
    public var requestID: String
    public var identity: KVCompatibilityIdentity
    /// The sequence's tokens (a prompt's: its completion's logits follow the last).
    public var tokenCount: Int
    /// The first position whose KV travels: the receiver holds the positions before it already (its prefix cache).
    /// A multiple of the block size below `tokenCount`; 0 sends the whole sequence.
    public var firstToken: Int
    /// Bytes of each layer; must equal `identity.layerByteCount(tokenCount:from:)`.
    public var layerByteCount: Int
    /// The sending node as its certificate names it (set by the receiving transport, never read from the wire);
    /// nil in insecure mode and in-process transfers.
    public var sender: String?

    public init(requestID: String, identity: KVCompatibilityIdentity, tokenCount: Int, firstToken: Int = 0) {
        self.requestID = requestID
        self.identity = identity
        self.tokenCount = tokenCount
        self.firstToken = firstToken
        self.layerByteCount = identity.layerByteCount(tokenCount: tokenCount, from: firstToken)
    }

    /// Why `firstToken` cannot start a transfer of `tokenCount` tokens; nil when it can.
    public var firstTokenProblem: String? {
        guard firstToken >= 0, firstToken < tokenCount, firstToken % identity.blockSize == 0 else {
            return "first token \(firstToken) must be a multiple of the block size \(identity.blockSize) below the \(tokenCount) tokens"
        }
        return nil
    }

    /// Bytes of the whole transfer.
    public var totalByteCount: Int { layerByteCount * identity.layers }
}

/// The sender's last word: the prompt's token count and the logits after its last token, from which the decode
/// side samples the first token (prefill workers never sample).
public struct KVTransferCompletion: Sendable, Equatable {
    public var tokenCount: Int
    /// One per vocabulary entry: the logits after the prompt's last token. None when a decode worker moves a
    /// generation (its next token comes from a decode step on the receiver).
    public var logits: [Float]

    public init(tokenCount: Int, logits: [Float]) {
        self.tokenCount = tokenCount
        self.logits = logits
    }
}

/// What a finished transfer did.
public struct KVTransferReport: Sendable, Equatable {
    public var requestID: String
    public var transport: KVTransportKind
    public var bytes: Int
    public var seconds: Double

    public var gigabytesPerSecond: Double { seconds > 0 ? Double(bytes) / seconds / 1e9 : 0 }
}
