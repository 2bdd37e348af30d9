// The Qwen3 forward pass (llama.cpp's src/models/qwen3.cpp): Llama's graph with RoPE on halves, no biases, and
// every query and key head RMS-normalized with its own gain before RoPE ("attn_q_norm", "attn_k_norm"). The
// head dimension is its own hyperparameter (`attention.key_length`: 128 where d / heads is 64 in Qwen3-0.6B).
//
// Shapes, with d = embeddingLength, q = headCount·headDim, kv = kvHeadCount·headDim, ff = feedForwardLength:
//   x [rows × d] → per layer: attention block, feed-forward block → final RMSNorm → logits [rows × vocab].

enum Qwen3 {
    static func forward<Backend>(
        _ pass: ForwardPass<Backend>, logitRows: UnsafePointer<Int32>, logitRowCount: Int,
        logits: UnsafeMutablePointer<Float>
    ) {
        let s = pass.s, c = pass.c, d = c.embeddingLength
        // Token embeddings: x[i] = E[token_i] ("token_embd.weight")                  x [n × d]
        pass.embed()

        for l in 0..<c.layerCount {
            let layer = pass.w.layers[l]

            // Attention block ------------------------------------------------------------------------------
            // x += the previous layer's feed-forward output; xb = RMSNorm(x) · g_attn  xb [n × d]
            pass.residualNorm(adding: l > 0 ? s.xb : nil, layer.attentionNorm, into: s.xb)
            if l > 0 { pass.observe("l_out-\(l - 1)", s.x, width: d) }
            pass.observe("attn_norm-\(l)", s.xb, width: d)
            // q = xb·Wqᵀ, k = xb·Wkᵀ, v = xb·Wvᵀ                                     q [n × q], k, v [n × kv]
            pass.attentionProjections(layer: l)
            // Each head of q and k: RMSNorm(head) · g_q / g_k                       [headDim] gains
            pass.headNorms(layer: l)
            // Rotate (x[i], x[i + ropeDim/2]) of each head by the row's position
            pass.rope(layer: l)
            // Store k, v; xb2 = softmax(q·Kᵀ/√hd + causal mask)·V; xb = xb2·Woᵀ  xb [n × d]
            pass.attention(layer: l)

            // Feed-forward block (SwiGLU) -----------------------------------------------------------------
            // x += the attention output; xb = RMSNorm(x) · g_ffn                    xb [n × d]
            pass.residualNorm(adding: s.xb, layer.feedForwardNorm, into: s.xb)
            pass.observe("ffn_inp-\(l)", s.x, width: d)
            pass.observe("ffn_norm-\(l)", s.xb, width: d)
            // xb = (silu(xb·Wgateᵀ) ⊙ (xb·Wupᵀ))·Wdownᵀ, added to x by the next layer's first step (or below)
            pass.feedForward(layer: l, activation: .silu)
        }
        pass.residual(adding: s.xb)
        pass.observe("l_out-\(c.layerCount - 1)", s.x, width: d)

        // logits = RMSNorm(x)·g_out · W_outᵀ for the rows that need them            logits [m × vocab]
        pass.output(logitRows: logitRows, logitRowCount: logitRowCount, logits: logits)
    }
}
