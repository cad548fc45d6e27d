// CPU reference of kernels/sampling/greedy.cu's pick (and the CPU engine's decodeGreedy): the sampler's greedy
// rule over ids below `vocab` — NaN as −inf, banned_id excluded, ties to the lower id.
#pragma once
#include <cmath>
#include <cstdint>

#include "csrc/engine/engine.h"

namespace flashmpt::ref {

inline int32_t greedyPick(const float* row, int vocab, int banned_id) {
  int32_t best = -1;
  float bestValue = -INFINITY;
  for (int id = 0; id < vocab; ++id) {
    const float value = row[id];
    if (id == banned_id || std::isnan(value)) continue;
    if (value > bestValue) bestValue = value, best = id;
  }
  if (bestValue == INFINITY) return kGreedyPickInfinite;
  return best < 0 ? kGreedyPickNone : best;
}

// A step of a host-side chain: the picks of n rows (row stride `stride`), and the ids the next step feeds — a
// refused row feeds 0, as the GPU kernel does.
inline void greedyPickRows(const float* rows, int64_t stride, int n, int vocab, int banned_id, int32_t* picks,
                           int32_t* next) {
  for (int r = 0; r < n; ++r) {
    picks[r] = greedyPick(rows + r * stride, vocab, banned_id);
    next[r] = picks[r] < 0 ? 0 : picks[r];
  }
}

}  // namespace flashmpt::ref
