#include "csrc/engine/cuda/forward.h"

#include "csrc/engine/weights.h"
#include "csrc/runtime/cuda_check.h"
#include "kernels/attention/attention_params.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/norm/layernorm.h"
#include "kernels/qkv/qkv_epilogue.h"

namespace flashmpt {
namespace {

AttnDType attnDType(DType dtype) { return dtype == DType::F16 ? AttnDType::F16 : AttnDType::BF16; }

uint8_t* offsetBytes(const DeviceBuffer& buffer, int64_t elements, DType dtype) {
  return buffer.as<uint8_t>() + elements * int64_t(dtypeSize(dtype));
}

void runGemm(const ForwardState& s, const void* a, int64_t lda, const void* w, const float* bias, void* c, int64_t ldc,
             int m, int n, int k, GemmOut out, cudaStream_t stream, float alpha = 1.f) {
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
  CUDA_CHECK(gemm(p, stream));
}

void runLayerNorm(const ForwardState& s, const float* x, int rows, const float* weight, const float* bias, void* y,
                  cudaStream_t stream) {
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
  CUDA_CHECK(layerNorm(p, stream));
}

void runAttention(const ForwardState& s, const PassRows& r, int layer, cudaStream_t stream) {
  const ModelConfig& c = *s.config;
  const int headDim = c.d_model / c.n_heads;
  const void* k = offsetBytes(s.kv->k, layer * s.kv->layer_stride, s.dtype);
  const void* v = offsetBytes(s.kv->v, layer * s.kv->layer_stride, s.dtype);
  if (r.decode) {
    DecodeAttentionParams p{};
    p.q = s.ws->q.get();
    p.o = s.ws->h.get();
    p.k_cache = k;
    p.v_cache = v;
    p.slot = r.slots;
    p.seq_len = r.seq_lens;
    p.slot_stride = s.kv->slot_stride;
    p.row_stride = c.d_model;
    p.head_stride = headDim;
    p.batch = r.rows;
    p.n_heads = c.n_heads;
    p.head_dim = headDim;
    p.max_seq_len = int(s.kv_tokens);
    p.softmax_scale = c.softmax_scale;
    p.alibi_slopes = s.alibi_slopes;
    p.workspace = s.ws->attn.as<float>();
    p.dtype = attnDType(s.dtype);
    CUDA_CHECK(decode_attention(p, stream));
    return;
  }
  const int64_t slotOffset = int64_t(r.slot) * s.kv->slot_stride;
  FlashAttentionParams p{};
  p.q = s.ws->q.get();
  p.k = offsetBytes(s.kv->k, layer * s.kv->layer_stride + slotOffset, s.dtype);
  p.v = offsetBytes(s.kv->v, layer * s.kv->layer_stride + slotOffset, s.dtype);
  p.o = s.ws->h.get();
  p.q_batch_stride = p.o_batch_stride = int64_t(r.rows) * c.d_model;
  p.k_batch_stride = p.v_batch_stride = s.kv->slot_stride;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = c.d_model;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = headDim;
  p.batch = 1;
  p.n_heads = c.n_heads;
  p.seqlen_q = r.rows;
  p.seqlen_k = r.position0 + r.rows;
  p.head_dim = headDim;
  p.softmax_scale = c.softmax_scale;
  p.alibi_slopes = s.alibi_slopes;
  p.causal = true;
  p.dtype = attnDType(s.dtype);
  CUDA_CHECK(flash_attention_prefill(p, stream));
}

}  // namespace

size_t workspaceBytes(const ModelConfig& c, DType dtype, int rows, int64_t kv_tokens) {
  const size_t e = dtypeSize(dtype), n = size_t(rows), d = size_t(c.d_model);
  const size_t attn = decode_attention_workspace_floats(kDecodeRows, c.n_heads, c.d_model / c.n_heads, int(kv_tokens));
  return n * d * 4 + n * d * e * 3 + n * 3 * d * e + n * size_t(c.d_ff) * e +
         size_t(kDecodeRows) * size_t(c.vocab_size) * 4 + attn * 4;
}

Workspace allocateWorkspace(const ModelConfig& c, DType dtype, int rows, int64_t kv_tokens) {
  const size_t e = dtypeSize(dtype), n = size_t(rows), d = size_t(c.d_model);
  Workspace ws;
  ws.rows = rows;
  ws.x = DeviceBuffer(n * d * 4);
  ws.h = DeviceBuffer(n * d * e);
  ws.qkv = DeviceBuffer(n * 3 * d * e);
  ws.q = DeviceBuffer(n * d * e);
  ws.u = DeviceBuffer(n * size_t(c.d_ff) * e);
  ws.logits = DeviceBuffer(size_t(kDecodeRows) * size_t(c.vocab_size) * 4);
  ws.attn = DeviceBuffer(
      decode_attention_workspace_floats(kDecodeRows, c.n_heads, c.d_model / c.n_heads, int(kv_tokens)) * 4);
  return ws;
}

void enqueueLayers(const ForwardState& s, const PassRows& r, cudaStream_t stream) {
  const ModelConfig& c = *s.config;
  const Workspace& ws = *s.ws;
  const int d = c.d_model, rows = r.rows;
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
    runLayerNorm(s, x, rows, w.ln1_w, w.ln1_b, ws.h.get(), stream);
    runGemm(s, ws.h.get(), d, w.wqkv, w.bqkv, ws.qkv.get(), 3 * d, rows, 3 * d, d, GemmOut::Half, stream);

    QkvEpilogueParams qp;
    qp.qkv = ws.qkv.get();
    qp.q = ws.q.get();
    qp.k_cache = offsetBytes(s.kv->k, layer * s.kv->layer_stride, s.dtype);
    qp.v_cache = offsetBytes(s.kv->v, layer * s.kv->layer_stride, s.dtype);
    qp.slot_stride = s.kv->slot_stride;
    qp.row_stride = d;
    if (r.decode) {
      qp.slots = r.slots;
      qp.positions = r.positions;
    } else {
      qp.slot0 = r.slot;
      qp.position0 = r.position0;
    }
    qp.q_ln_weight = w.q_ln_w;
    qp.q_ln_bias = w.q_ln_b;
    qp.k_ln_weight = w.k_ln_w;
    qp.k_ln_bias = w.k_ln_b;
    qp.rows = rows;
    qp.d_model = d;
    qp.clip = c.clip_qkv;
    qp.eps = c.ln_eps;
    qp.dtype = s.dtype;
    CUDA_CHECK(qkvEpilogue(qp, stream));

    runAttention(s, r, layer, stream);
    runGemm(s, ws.h.get(), d, w.wout, w.bout, x, d, rows, d, d, GemmOut::AddFloat, stream);
    runLayerNorm(s, x, rows, w.ln2_w, w.ln2_b, ws.h.get(), stream);
    runGemm(s, ws.h.get(), d, w.wup, w.bup, ws.u.get(), c.d_ff, rows, c.d_ff, d, GemmOut::HalfGelu, stream);
    runGemm(s, ws.u.get(), c.d_ff, w.wdown, w.bdown, x, d, rows, d, c.d_ff, GemmOut::AddFloat, stream);
  }
}

void enqueueHead(const ForwardState& s, int row0, int rows, cudaStream_t stream) {
  const ModelConfig& c = *s.config;
  const Workspace& ws = *s.ws;
  runLayerNorm(s, ws.x.as<float>() + int64_t(row0) * c.d_model, rows, s.weights->lnf_w, s.weights->lnf_b, ws.h.get(),
               stream);
  runGemm(s, ws.h.get(), c.d_model, s.weights->wte, nullptr, ws.logits.get(), c.vocab_size, rows, c.vocab_size,
          c.d_model, GemmOut::Float, stream, c.logit_scale);
}

}  // namespace flashmpt
