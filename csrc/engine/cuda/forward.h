// The MPT forward pass as a sequence of kernel launches on one stream: no allocation, no synchronization,
// so a decode step can be captured into a CUDA graph as is. Buffers are owned by the engine.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/cuda/model_weights.h"
#include "csrc/engine/engine.h"
#include "csrc/runtime/device_buffer.h"
#include "kernels/attention/attention_params.h"  // kFlashShortQueries

namespace flashmpt {

// Rows of one decode step at most (decodeBatch splits larger batches); also the logits rows of one head pass.
constexpr int kDecodeRows = 64;

// The paged KV cache (kernels/kv/paged_kv.h): per layer a pool of blocks of kKvBlockTokens rows of d_model;
// element (layer, block, row, c) at layer·layer_stride + block·block_stride + row·d_model + c,
// c = head·head_dim + i. Sequences find their blocks through block-table rows of table_stride entries.
struct KvCache {
  DeviceBuffer k, v;
  int64_t blocks = 0, block_stride = 0, layer_stride = 0;
  int table_stride = 0;
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
  DeviceBuffer attn_counters;  // its split tickets, one per (row, head), kept at zero between launches
  DeviceBuffer naive;   // fp32 scores of the naive attention, only where fusedAttention is false
  // [kv_tokens, d_model] each: one sequence's keys and values in one piece, as the prefill attention takes them
  DeviceBuffer k_seq, v_seq;
  // The GEMMs' split-K workspace (kernels/gemm/gemm.h): partial sums, and tickets kept at zero between launches
  DeviceBuffer split_partials, split_counters;
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
  // GEMMs of up to 64 rows outside prompts passes (decode steps, a sequence's short chunks, the LM head) run on the
  // wgmma kernel's decode layout (GemmParams::wgmma_decode) instead of the skinny kernel: engines of at least
  // kWgmmaDecodeMinSequences sequences, whose large decode batches carry the throughput.
  bool wgmma_decode = false;
};

// The decode GEMMs of the 1B shape run faster on the wgmma layout from ~32 rows and slower below 16 (H100, session 7).
constexpr int kWgmmaDecodeMinSequences = 32;

// The rows [row0, row0 + rows) of a prompts pass: one prompt (or its last chunk) at positions position0 ..
// position0 + rows − 1 of the sequence with device block-table row block_table.
struct PromptSegment {
  int row0 = 0, rows = 0, position0 = 0;
  const int32_t* block_table = nullptr;

  // In a packed prompts pass (PassRows::packed), whether this prompt attends in the packed launch (the short-prompt
  // tile's queries) rather than in a launch of its own.
  bool attendsPacked() const { return rows <= kFlashShortQueries; }
};

// Which tokens a pass runs: a chunk of one sequence (prefill or extend), one new token for each of several
// sequences (decode), or whole prompts of several sequences (segments).
struct PassRows {
  int rows = 0;
  const int32_t* ids = nullptr;  // device [rows]
  bool decode = false;
  // Device block-table rows (KvCache::table_stride entries each): the chunk's sequence, or one per decode row.
  const int32_t* block_tables = nullptr;
  int position0 = 0;  // chunk: rows are positions position0 .. position0 + rows − 1
  // Host [segment_count]: the prompts of a prompts pass (table_rows and positions then give each row's).
  const PromptSegment* segments = nullptr;
  int segment_count = 0;
  // A prompts pass whose prompts all start empty, with the fused attention: the QKV epilogue writes the pass's keys
  // to ws.k_seq / v_seq in pass order and its prompts of up to kFlashShortQueries rows attend packed, in one launch.
  // Device [2][packed_count]: their first rows, then their lengths.
  const int* packed = nullptr;
  int packed_count = 0;
  int packed_longest = 0;
  // decode: device [rows] each; row r's table row (r itself), position (negative: a padding row, computed,
  // never cached) and the keys it attends to, itself included; a prompts pass: table row and position
  const int* table_rows = nullptr;
  const int* positions = nullptr;
  const int* seq_lens = nullptr;
  const int* host_seq_lens = nullptr;  // host copy, read only on the naive-attention path (never captured)
};

size_t workspaceBytes(const ModelConfig& config, DType dtype, int rows, int64_t kv_tokens);
Workspace allocateWorkspace(const ModelConfig& config, DType dtype, int rows, int64_t kv_tokens);

// Embedding and every block: leaves the final residual stream of the rows in ws.x.
void enqueueLayers(const ForwardState& state, const PassRows& rows, cudaStream_t stream);
// Final LayerNorm and the tied LM head for rows [row0, row0 + rows) of ws.x (rows ≤ kDecodeRows):
// fp32 logits in ws.logits, row-major. pdl: the previous operation on the stream is a kernel (the last layer's),
// not a copy, so the final LayerNorm may launch programmatically dependent on it.
void enqueueHead(const ForwardState& state, int row0, int rows, cudaStream_t stream, bool pdl);

}  // namespace flashmpt
