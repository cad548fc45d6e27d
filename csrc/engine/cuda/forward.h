// The MPT forward pass as a sequence of kernel launches on one stream: no allocation, no synchronization,
// so a decode step can be captured into a CUDA graph as is. Buffers are owned by the engine.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/cuda/model_weights.h"
#include "csrc/engine/engine.h"
#include "csrc/runtime/device_buffer.h"

namespace flashmpt {

// Rows of one decode step at most (decodeBatch splits larger batches); also the logits rows of one head pass.
constexpr int kDecodeRows = 64;

// K and V of every layer, slot and position: element (layer, slot, position, c) at
// layer·layer_stride + slot·slot_stride + position·d_model + c, c = head·head_dim + i.
struct KvCache {
  DeviceBuffer k, v;
  int64_t slot_stride = 0, layer_stride = 0;
};

// Activations for up to `rows` token rows, sized once at load.
struct Workspace {
  int rows = 0;
  DeviceBuffer x;       // [rows, d_model] fp32: the residual stream
  DeviceBuffer h;       // [rows, d_model]: LayerNorm output, then attention output
  DeviceBuffer qkv;     // [rows, 3·d_model]
  DeviceBuffer q;       // [rows, d_model]: q after the QKV epilogue
  DeviceBuffer u;       // [rows, d_ff]: GELU(mlp_up)
  DeviceBuffer logits;  // [kDecodeRows, vocab] fp32
  DeviceBuffer attn;    // decode attention's split partials for kDecodeRows rows
  DeviceBuffer naive;   // fp32 scores of the naive attention, only where fusedAttention is false
};

// The fused attention kernels take head_dim 64 and 128 in bf16 / f16; other head dims (small test models) and
// the float32 mode run the naive kernel with fp32 scores, eagerly: its launch shape depends on host-side
// sequence lengths, so no decode graph.
bool fusedAttention(const ModelConfig& config, DType dtype);

struct ForwardState {
  const ModelConfig* config = nullptr;
  DType dtype = DType::BF16;
  int64_t kv_tokens = 0;
  const ModelWeights* weights = nullptr;
  const KvCache* kv = nullptr;
  const Workspace* ws = nullptr;
  const float* alibi_slopes = nullptr;  // device, or nullptr without ALiBi
};

// Which tokens a pass runs: a chunk of one sequence (prefill or extend), or one new token for each of
// several sequences (decode).
struct PassRows {
  int rows = 0;
  const int32_t* ids = nullptr;  // device [rows]
  bool decode = false;
  int slot = 0, position0 = 0;  // chunk: rows are positions position0 .. position0 + rows − 1 of slot
  // decode: device [rows] each; a negative position marks a padding row (computed, never cached)
  const int* slots = nullptr;
  const int* positions = nullptr;
  const int* seq_lens = nullptr;  // keys each row attends to, itself included
  // Host copies of slots and seq_lens, read only on the naive-attention path (never captured).
  const int* host_slots = nullptr;
  const int* host_seq_lens = nullptr;
};

size_t workspaceBytes(const ModelConfig& config, DType dtype, int rows, int64_t kv_tokens);
Workspace allocateWorkspace(const ModelConfig& config, DType dtype, int rows, int64_t kv_tokens);

// Embedding and every block: leaves the final residual stream of the rows in ws.x.
void enqueueLayers(const ForwardState& state, const PassRows& rows, cudaStream_t stream);
// Final LayerNorm and the tied LM head for rows [row0, row0 + rows) of ws.x (rows ≤ kDecodeRows):
// fp32 logits in ws.logits, row-major.
void enqueueHead(const ForwardState& state, int row0, int rows, cudaStream_t stream);

}  // namespace flashmpt
