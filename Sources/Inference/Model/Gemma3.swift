// The Gemma 3 forward pass (llama.cpp's src/models/gemma3.cpp).
//
// What sets it apart from Llama: the embeddings are scaled by √d; every query and key head is RMS-normalized
// before RoPE; the attention output and the feed-forward output are each RMS-normalized again before they join
// the residual stream; the feed-forward block is GELU-gated; and five of every six layers attend only to the last
// `slidingWindow` positions, rotating with their own RoPE base (10 000 against the global layers' 1 000 000).
// Its RMSNorm gains are stored as (1 + w) by the converter, so the plain RMSNorm applies them. The attention scale
// is 1/√headDim (1/√(d / heads) for the 27B model), and the output matrix is the token embedding.
//
// Shapes, with d = embeddingLength, q = headCount·headDim, kv = kvHeadCount·headDim, ff = feedForwardLength
// (270M: d 640, 4 heads and 1 KV head of 256, ff 2048, window 512):
//   x [rows × d] → per layer: attention block, feed-forward block → final RMSNorm → logits [rows × vocab].

enum Gemma3 {
    static func forward<Backend>(
        _ pass: ForwardPass<Backend>, logitRows: UnsafePointer<Int32>, logitRowCount: Int,
        logits: UnsafeMutablePointer<Float>
    ) {
        let s = pass.s, c = pass.c, d = c.embeddingLength
        // Token embeddings, scaled: x[i] = E[token_i] · √d ("token_embd.weight")     x [n × d]
        pass.embed()
        pass.scaleEmbeddings(by: c.embeddingScale ?? 1)
        pass.observe("inp_scaled", s.x, width: d)

        for l in 0..<c.layerCount {
            let layer = pass.w.layers[l]

            // Attention block ------------------------------------------------------------------------------
            // xb = RMSNorm(x) · g_attn                                                xb [n × d]
            pass.residualNorm(adding: nil, layer.attentionNorm, into: s.xb)
            pass.observe("attn_norm-\(l)", s.xb, width: d)
            // q = xb·Wqᵀ, k = xb·Wkᵀ, v = xb·Wvᵀ                                     q [n × q], k, v [n × kv]
            pass.attentionProjections(layer: l)
            // Each head of q and k: RMSNorm(head) · g_q / g_k                       [headDim] gains
            pass.headNorms(layer: l)
            // Rotate (x[i], x[i + ropeDim/2]) of each head by the row's position, with this layer's RoPE base
            pass.rope(layer: l)
            // Store k, v; xb2 = softmax(scale · q·Kᵀ + causal (and window) mask)·V; xb = xb2·Woᵀ   xb [n × d]
            pass.attention(layer: l)
            // x += RMSNorm(xb) · g_post_attn ("sa_out")                               x [n × d]
            pass.norm(s.xb, layer.postAttentionNorm!, into: s.xb, width: d)
            pass.observe("attn_post_norm-\(l)", s.xb, width: d)
            pass.residual(adding: s.xb)
            pass.observe("sa_out-\(l)", s.x, width: d)

            // Feed-forward block (GeGLU) ------------------------------------------------------------------
            // xb = RMSNorm(x) · g_ffn                                                 xb [n × d]
            pass.residualNorm(adding: nil, layer.feedForwardNorm, into: s.xb)
            pass.observe("ffn_norm-\(l)", s.xb, width: d)
            // xb = (gelu(xb·Wgateᵀ) ⊙ (xb·Wupᵀ))·Wdownᵀ                             xb [n × d]
            pass.feedForward(layer: l, activation: .gelu)
            // x += RMSNorm(xb) · g_post_ffw                                           x [n × d]
            pass.norm(s.xb, layer.postFeedForwardNorm!, into: s.xb, width: d)
            pass.observe("ffn_post_norm-\(l)", s.xb, width: d)
            pass.residual(adding: s.xb)
            pass.observe("l_out-\(l)", s.x, width: d)
        }

        // logits = RMSNorm(x)·g_out · W_outᵀ for the rows that need them            logits [m × vocab]
        pass.output(logitRows: logitRows, logitRowCount: logitRowCount, logits: logits)
    }
}
