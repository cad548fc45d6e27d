#include "csrc/engine/cuda/forward.h"

#include <algorithm>

#include "csrc/engine/weights.h"
#include "csrc/runtime/cuda_check.h"
#include "kernels/attention/attention_params.h"
#include "kernels/attention/naive_attention.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/kv/kv_gather.h"
#include "kernels/norm/layernorm.h"
#include "kernels/qkv/qkv_epilogue.h"

namespace flashmpt {
namespace {

AttnDType attnDType(DType dtype) {
  switch (dtype) {
    case DType::F32: return AttnDType::F32;
    case DType::F16: return AttnDType::F16;
    case DType::BF16: return AttnDType::BF16;
  }
  return AttnDType::BF16;
}

uint8_t* offsetBytes(const DeviceBuffer& buffer, int64_t elements, DType dtype) {
  return buffer.as<uint8_t>() + elements * int64_t(dtypeSize(dtype));
}

// How a pass's GEMMs sum a row (kernels/gemm/gemm.h): bits independent of M at any M for a pass of several prompts
// (GemmParams::row_invariant); else the fastest layout for the pass's rows (a chunk of one sequence runs alone
// whatever else runs), up to 64 rows the skinny kernel or, in engines that batch many, the wgmma kernel's decode
// layout (GemmParams::wgmma_decode) — the same kernel for a decode step's rows and for one sequence's, so that
// decodeBatch gives each row forward's bits.
enum class GemmRows { Fastest, Prompts, WgmmaDecode };

GemmRows nonPromptGemmRows(const ForwardState& s) { return s.wgmma_decode ? GemmRows::WgmmaDecode : GemmRows::Fastest; }

void runGemm(const ForwardState& s, const void* a, int64_t lda, const void* w, const float* bias, void* c, int64_t ldc,
             int m, int n, int k, GemmOut out, GemmRows rows, cudaStream_t stream, float alpha = 1.f) {
  GemmParams p;
  p.a = a;
  p.w = w;
  p.c = c;
  p.lda = lda;
  p.ldw = k;
  p.ldc = ldc;
  p.M = m;
  p.N = n;
  p.K = k;
  p.alpha = alpha;
  p.bias = bias;
  p.out = out;
  p.dtype = s.dtype;
  p.pdl = true;
  p.row_invariant = rows == GemmRows::Prompts;
  p.wgmma_decode = rows == GemmRows::WgmmaDecode;
  p.split_partials = s.ws->split_partials.as<float>();
  p.split_partial_floats = s.ws->split_partials.bytes() / sizeof(float);
  p.split_counters = s.ws->split_counters.as<unsigned>();
  p.split_counter_count = int(s.ws->split_counters.bytes() / sizeof(unsigned));
  CUDA_CHECK(gemm(p, stream));
}

// pdl: launched as programmatically dependent on the previous kernel (which must be a kernel, not a copy).
void runLayerNorm(const ForwardState& s, const float* x, int rows, const float* weight, const float* bias, void* y,
                  bool pdl, cudaStream_t stream) {
  LayerNormParams p;
  p.x = x;
  p.y = y;
  p.weight = weight;
  p.bias = bias;
  p.rows = rows;
  p.cols = s.config->d_model;
  p.eps = s.config->ln_eps;
  p.x_dtype = DType::F32;
  p.y_dtype = s.dtype;
  p.pdl = pdl;
  CUDA_CHECK(layerNorm(p, stream));
}

// Attention of `rows` queries, the last at position kv_len − 1, over keys 0 .. kv_len − 1 of one sequence held in
// one piece in ws.k_seq / ws.v_seq, into o.
FlashAttentionParams chunkAttention(const ForwardState& s, const void* q, void* o, int rows, int kv_len) {
  const ModelConfig& c = *s.config;
  const int headDim = c.d_model / c.n_heads;
  FlashAttentionParams p{};
  p.q = q;
  p.k = s.ws->k_seq.get();
  p.v = s.ws->v_seq.get();
  p.o = o;
  p.q_batch_stride = p.o_batch_stride = int64_t(rows) * c.d_model;
  p.k_batch_stride = p.v_batch_stride = int64_t(kv_len) * c.d_model;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = c.d_model;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = headDim;
  p.batch = 1;
  p.n_heads = c.n_heads;
  p.seqlen_q = rows;
  p.seqlen_k = kv_len;
  p.head_dim = headDim;
  p.softmax_scale = c.softmax_scale;
  p.alibi_slopes = s.alibi_slopes;
  p.causal = true;
  p.dtype = attnDType(s.dtype);
  return p;
}

// Copies keys and values 0 .. rows − 1 of the sequence with block-table row `table` (device) into ws.k_seq / v_seq.
void gatherSequence(const ForwardState& s, int layer, const int32_t* table, int rows, cudaStream_t stream) {
  KvGatherParams p;
  p.k_cache = offsetBytes(s.kv->k, layer * s.kv->layer_stride, s.dtype);
  p.v_cache = offsetBytes(s.kv->v, layer * s.kv->layer_stride, s.dtype);
  p.rows = KvRows{table, 0, s.kv->block_stride, s.config->d_model};
  p.k_out = s.ws->k_seq.get();
  p.v_out = s.ws->v_seq.get();
  p.rows_count = rows;
  p.d_model = s.config->d_model;
  p.dtype = s.dtype;
  p.pdl = true;
  CUDA_CHECK(kvGather(p, stream));
}

void runNaive(const ForwardState& s, const FlashAttentionParams& p, cudaStream_t stream) {
  if (naive_attention_scratch_bytes(p, NaiveScores::Float) > s.ws->naive.bytes()) {
    fail("E_INTERNAL", "naive attention scratch too small");
  }
  CUDA_CHECK(naive_attention(p, NaiveScores::Float, s.ws->naive.get(), stream));
}

// A chunk's attention: the fused kernel where it applies, else the naive one.
void runChunkAttention(const ForwardState& s, const FlashAttentionParams& p, cudaStream_t stream) {
  if (fusedAttention(*s.config, s.dtype)) {
    CUDA_CHECK(flash_attention_prefill(p, stream));
  } else {
    runNaive(s, p, stream);
  }
}

// The short prompts of a packed prompts pass (PassRows::packed) in one launch: their keys sit in ws.k_seq in pass
// order, and each prompt gets the bits of a launch of its own.
void runPackedPrompts(const ForwardState& s, const PassRows& r, cudaStream_t stream) {
  if (r.packed_count == 0) return;
  FlashAttentionParams p = chunkAttention(s, s.ws->q.get(), s.ws->h.get(), r.packed_longest, r.packed_longest);
  p.batch = r.packed_count;
  p.seg_row0 = r.packed;
  p.seg_len = r.packed + r.packed_count;
  CUDA_CHECK(flash_attention_prefill(p, stream));
}

// Decode steps with the fused kernel take the new token straight from ws.qkv (no QKV epilogue kernel).
void runAttention(const ForwardState& s, const PassRows& r, int layer, const LayerWeights& w, cudaStream_t stream) {
  const ModelConfig& c = *s.config;
  const int headDim = c.d_model / c.n_heads;
  const bool fused = fusedAttention(c, s.dtype);
  if (r.segments) {  // each prompt attends to its own cache, written by the QKV epilogue
    if (r.packed) runPackedPrompts(s, r, stream);
    const int64_t rowBytes = int64_t(c.d_model) * int64_t(dtypeSize(s.dtype));
    for (int i = 0; i < r.segment_count; ++i) {
      const PromptSegment& seg = r.segments[i];
      if (r.packed && seg.attendsPacked()) continue;  // attended in runPackedPrompts
      const int keys = seg.position0 + seg.rows;
      gatherSequence(s, layer, seg.block_table, keys, stream);
      runChunkAttention(s,
                        chunkAttention(s, s.ws->q.as<uint8_t>() + seg.row0 * rowBytes,
                                       s.ws->h.as<uint8_t>() + seg.row0 * rowBytes, seg.rows, keys),
                        stream);
    }
    return;
  }
  if (!r.decode) {
    // The QKV epilogue wrote the chunk's own keys to k_seq / v_seq; a cached prefix comes from the blocks.
    if (r.position0 > 0) gatherSequence(s, layer, r.block_tables, r.position0, stream);
    runChunkAttention(s, chunkAttention(s, s.ws->q.get(), s.ws->h.get(), r.rows, r.position0 + r.rows), stream);
    return;
  }
  if (!fused) {  // one query per row against its own sequence, lengths read on the host
    const int64_t rowBytes = int64_t(c.d_model) * int64_t(dtypeSize(s.dtype));
    for (int i = 0; i < r.rows; ++i) {
      gatherSequence(s, layer, r.block_tables + int64_t(i) * s.kv->table_stride, r.host_seq_lens[i], stream);
      runNaive(s,
               chunkAttention(s, s.ws->q.as<uint8_t>() + i * rowBytes, s.ws->h.as<uint8_t>() + i * rowBytes, 1,
                              r.host_seq_lens[i]),
               stream);
    }
    return;
  }
  DecodeAttentionParams p{};
  p.o = s.ws->h.get();
  p.new_token.qkv = s.ws->qkv.get();
  p.new_token.positions = r.positions;
  p.new_token.q_ln_weight = w.q_ln_w;
  p.new_token.q_ln_bias = w.q_ln_b;
  p.new_token.k_ln_weight = w.k_ln_w;
  p.new_token.k_ln_bias = w.k_ln_b;
  p.new_token.clip = c.clip_qkv;
  p.new_token.eps = c.ln_eps;
  p.k_cache = offsetBytes(s.kv->k, layer * s.kv->layer_stride, s.dtype);
  p.v_cache = offsetBytes(s.kv->v, layer * s.kv->layer_stride, s.dtype);
  p.kv.block_table = r.block_tables;
  p.kv.table_stride = s.kv->table_stride;
  p.kv.block_stride = s.kv->block_stride;
  p.kv.row_stride = c.d_model;
  p.seq_len = r.seq_lens;
  p.head_stride = headDim;
  p.batch = r.rows;
  p.n_heads = c.n_heads;
  p.head_dim = headDim;
  p.max_seq_len = int(s.kv_tokens);
  p.softmax_scale = c.softmax_scale;
  p.alibi_slopes = s.alibi_slopes;
  p.workspace = s.ws->attn.as<float>();
  p.split_counters = s.ws->attn_counters.as<unsigned>();
  p.dtype = attnDType(s.dtype);
  p.pdl = true;
  CUDA_CHECK(decode_attention(p, stream));
}

// Clip, split and QK-LayerNorm of the projection; k and v into the cache (and, for a chunk, into k_seq / v_seq).
void runQkvEpilogue(const ForwardState& s, const PassRows& r, int layer, const LayerWeights& w, cudaStream_t stream) {
  const ModelConfig& c = *s.config;
  const Workspace& ws = *s.ws;
  const int d = c.d_model;
  QkvEpilogueParams qp;
  qp.qkv = ws.qkv.get();
  qp.q = ws.q.get();
  qp.k_cache = offsetBytes(s.kv->k, layer * s.kv->layer_stride, s.dtype);
  qp.v_cache = offsetBytes(s.kv->v, layer * s.kv->layer_stride, s.dtype);
  qp.kv.block_table = r.block_tables;
  qp.kv.table_stride = s.kv->table_stride;
  qp.kv.block_stride = s.kv->block_stride;
  qp.kv.row_stride = d;
  if (r.decode || r.segments) {
    qp.sequences = r.table_rows;
    qp.positions = r.positions;
    if (r.packed) {
      qp.k_seq = ws.k_seq.get();
      qp.v_seq = ws.v_seq.get();
    }
  } else {
    qp.position0 = r.position0;
    qp.k_seq = ws.k_seq.get();
    qp.v_seq = ws.v_seq.get();
  }
  qp.q_ln_weight = w.q_ln_w;
  qp.q_ln_bias = w.q_ln_b;
  qp.k_ln_weight = w.k_ln_w;
  qp.k_ln_bias = w.k_ln_b;
  qp.rows = r.rows;
  qp.d_model = d;
  qp.clip = c.clip_qkv;
  qp.eps = c.ln_eps;
  qp.dtype = s.dtype;
  qp.pdl = true;
  CUDA_CHECK(qkvEpilogue(qp, stream));
}

}  // namespace

bool fusedAttention(const ModelConfig& c, DType dtype) {
  const int headDim = c.d_model / c.n_heads;
  return dtype != DType::F32 && (headDim == 64 || headDim == 128);
}

namespace {

// Split partials of the fused decode attention; the naive path needs none.
size_t decodeAttentionFloats(const ModelConfig& c, DType dtype, int64_t kv_tokens) {
  if (!fusedAttention(c, dtype)) return 0;
  return decode_attention_workspace_floats(kDecodeRows, c.n_heads, c.d_model / c.n_heads, int(kv_tokens));
}

// Tickets of the fused decode attention's splits: one per (decode row, head).
size_t decodeAttentionCounters(const ModelConfig& c) { return size_t(kDecodeRows) * size_t(c.n_heads); }

// fp32 scores (NaiveScores::Float) of every head of a chunk of `rows` queries against the whole cache.
size_t naiveScratchBytes(const ModelConfig& c, DType dtype, int rows, int64_t kv_tokens) {
  return fusedAttention(c, dtype) ? 0 : size_t(c.n_heads) * size_t(rows) * size_t(kv_tokens) * sizeof(float);
}

// Split-K workspace of the residual GEMMs (out_proj, mlp_down: d_model wide, at most max(d_model, d_ff) deep).
GemmSplitWorkspace splitWorkspace(const ModelConfig& c) {
  int sms = 0;
  CUDA_CHECK(multiprocessorCount(&sms));
  return gemmSplitWorkspace(c.d_model, std::max(c.d_model, c.d_ff), sms);
}

}  // namespace

namespace {

// Bytes of every workspace buffer: the one place their sizes are written, for allocateWorkspace and for the memory
// check that runs before it.
struct WorkspaceSizes {
  size_t x, h, qkv, q, u, logits, attn, attn_counters, naive, k_seq, v_seq, split_partials, split_counters;
  size_t total() const {
    return x + h + qkv + q + u + logits + attn + attn_counters + naive + k_seq + v_seq + split_partials + split_counters;
  }
};

WorkspaceSizes workspaceSizes(const ModelConfig& c, DType dtype, int rows, int64_t kv_tokens) {
  const size_t e = dtypeSize(dtype), n = size_t(rows), d = size_t(c.d_model);
  WorkspaceSizes z;
  z.x = n * d * sizeof(float);
  z.h = z.q = n * d * e;
  z.qkv = n * 3 * d * e;
  z.u = n * size_t(c.d_ff) * e;
  z.logits = size_t(kDecodeRows) * size_t(c.vocab_size) * sizeof(float);
  z.attn = decodeAttentionFloats(c, dtype, kv_tokens) * sizeof(float);
  z.attn_counters = decodeAttentionCounters(c) * sizeof(unsigned);
  z.naive = naiveScratchBytes(c, dtype, rows, kv_tokens);
  // A sequence's keys (gathered, or a chunk's own), or a prompts pass's keys in pass order.
  z.k_seq = z.v_seq = size_t(std::max<int64_t>(kv_tokens, rows)) * d * e;
  const GemmSplitWorkspace split = splitWorkspace(c);
  z.split_partials = split.partial_floats * sizeof(float);
  z.split_counters = split.counters * sizeof(unsigned);
  return z;
}

}  // namespace

size_t workspaceBytes(const ModelConfig& c, DType dtype, int rows, int64_t kv_tokens) {
  return workspaceSizes(c, dtype, rows, kv_tokens).total();
}

Workspace allocateWorkspace(const ModelConfig& c, DType dtype, int rows, int64_t kv_tokens) {
  const WorkspaceSizes z = workspaceSizes(c, dtype, rows, kv_tokens);
  Workspace ws;
  ws.rows = rows;
  ws.x = DeviceBuffer(z.x);
  ws.h = DeviceBuffer(z.h);
  ws.qkv = DeviceBuffer(z.qkv);
  ws.q = DeviceBuffer(z.q);
  ws.u = DeviceBuffer(z.u);
  ws.logits = DeviceBuffer(z.logits);
  ws.attn = DeviceBuffer(z.attn);
  ws.attn_counters = DeviceBuffer(z.attn_counters);
  CUDA_CHECK(cudaMemset(ws.attn_counters.get(), 0, ws.attn_counters.bytes()));
  ws.naive = DeviceBuffer(z.naive);
  ws.k_seq = DeviceBuffer(z.k_seq);
  ws.v_seq = DeviceBuffer(z.v_seq);
  ws.split_partials = DeviceBuffer(z.split_partials);
  ws.split_counters = DeviceBuffer(z.split_counters);
  CUDA_CHECK(cudaMemset(ws.split_counters.get(), 0, ws.split_counters.bytes()));
  return ws;
}

void enqueueLayers(const ForwardState& s, const PassRows& r, cudaStream_t stream) {
  const ModelConfig& c = *s.config;
  const Workspace& ws = *s.ws;
  const int d = c.d_model, rows = r.rows;
  // Prompts sharing a pass get their solo pass's bits.
  const GemmRows gemmRows = r.segments ? GemmRows::Prompts : nonPromptGemmRows(s);
  float* x = ws.x.as<float>();

  EmbeddingParams emb;
  emb.ids = r.ids;
  emb.table = s.weights->wte;
  emb.out = x;
  emb.rows = rows;
  emb.d_model = d;
  emb.dtype = s.dtype;
  CUDA_CHECK(embeddingGather(emb, stream));

  for (int layer = 0; layer < c.n_layers; ++layer) {
    const LayerWeights& w = s.weights->layers[size_t(layer)];
    runLayerNorm(s, x, rows, w.ln1_w, w.ln1_b, ws.h.get(), true, stream);
    runGemm(s, ws.h.get(), d, w.wqkv, w.bqkv, ws.qkv.get(), 3 * d, rows, 3 * d, d, GemmOut::Half, gemmRows, stream);

    // The fused decode kernel does the epilogue's work itself.
    if (!r.decode || !fusedAttention(c, s.dtype)) runQkvEpilogue(s, r, layer, w, stream);
    runAttention(s, r, layer, w, stream);
    runGemm(s, ws.h.get(), d, w.wout, w.bout, x, d, rows, d, d, GemmOut::AddFloat, gemmRows, stream);
    runLayerNorm(s, x, rows, w.ln2_w, w.ln2_b, ws.h.get(), true, stream);
    runGemm(s, ws.h.get(), d, w.wup, w.bup, ws.u.get(), c.d_ff, rows, c.d_ff, d, GemmOut::HalfGelu, gemmRows, stream);
    runGemm(s, ws.u.get(), c.d_ff, w.wdown, w.bdown, x, d, rows, d, c.d_ff, GemmOut::AddFloat, gemmRows, stream);
  }
}

void enqueueHead(const ForwardState& s, int row0, int rows, cudaStream_t stream, bool pdl) {
  const ModelConfig& c = *s.config;
  const Workspace& ws = *s.ws;
  runLayerNorm(s, ws.x.as<float>() + int64_t(row0) * c.d_model, rows, s.weights->lnf_w, s.weights->lnf_b, ws.h.get(),
               pdl, stream);
  runGemm(s, ws.h.get(), c.d_model, s.weights->wte, nullptr, ws.logits.get(), c.vocab_size, rows, c.vocab_size,
          c.d_model, GemmOut::Float, nonPromptGemmRows(s), stream, c.logit_scale);
}

}  // namespace flashmpt
