// The paged KV cache's addressing, shared by the CPU engine and every kernel that reads or writes the cache.
// A layer's keys (and values) are a pool of fixed-size blocks of rows; a sequence owns a list of blocks (its row
// of a block table), so ragged lengths waste at most one partial block each instead of a whole context. Row
// `pos` of a sequence lives in block table[pos >> kKvBlockShift], at row pos & (kKvBlockTokens − 1) of it.
// The same kernels also take plain contiguous tensors (the kernels' tensor API): no table, a batch stride.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define FLASHMPT_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FLASHMPT_HOST_DEVICE inline
#endif

namespace flashmpt {

// Tokens per KV block: a multiple of every prefill key tile (32 or 64 keys), so a tile never straddles blocks.
constexpr int kKvBlockShift = 6;
constexpr int kKvBlockTokens = 1 << kKvBlockShift;

// Where one sequence's rows are, as element offsets from the cache's base.
struct KvRows {
  const int32_t* table = nullptr;  // its physical block per logical block; nullptr: contiguous rows from `base`
  int64_t base = 0;
  int64_t block_stride = 0;  // elements from one physical block to the next
  int64_t row_stride = 0;    // elements from one row to the next (inside a block, or contiguous)

  FLASHMPT_HOST_DEVICE int64_t offset(int64_t pos) const {
    if (table == nullptr) return base + pos * row_stride;
    return int64_t(table[pos >> kKvBlockShift]) * block_stride + (pos & (kKvBlockTokens - 1)) * row_stride;
  }
};

// The rows of a batch of sequences: sequence b through row b of a block table (table_stride entries each), or
// contiguous at b · batch_stride when block_table is nullptr.
struct KvLayout {
  const int32_t* block_table = nullptr;
  int table_stride = 0;
  int64_t block_stride = 0;
  int64_t batch_stride = 0;
  int64_t row_stride = 0;

  FLASHMPT_HOST_DEVICE KvRows sequence(int b) const {
    KvRows r;
    r.table = block_table ? block_table + int64_t(b) * table_stride : nullptr;
    r.base = int64_t(b) * batch_stride;
    r.block_stride = block_stride;
    r.row_stride = row_stride;
    return r;
  }
};

}  // namespace flashmpt
