// The Llama forward pass (llama.cpp's src/models/llama.cpp), which Mistral's files (`llama` too) and Qwen2
// (src/models/qwen2.cpp: the same graph, with Q/K/V biases that `attentionProjections` adds and RoPE on halves)
// run as well.
//
// Shapes, with d = embeddingLength, q = headCount·headDim, kv = kvHeadCount·headDim, ff = feedForwardLength:
//   x [rows × d] → per layer: attention block, feed-forward block → final RMSNorm → logits [rows × vocab].

enum Llama {
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
            // q = xb·Wqᵀ (+ bq), k = xb·Wkᵀ (+ bk), v = xb·Wvᵀ (+ bv)               q [n × q], k, v [n × kv]
            pass.attentionProjections(layer: l)
            // Rotate each head's leading ropeDim dimensions by the row's position
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
