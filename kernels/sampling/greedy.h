// The greedy pick of a decode step, made on the GPU so the next step can start without a host round trip
// (Engine::decodeGreedy): for each real row, the best id below `vocab` — NaN as −inf, banned_id excluded, ties to
// the lower id, exactly the sampler's greedy rule — becomes the row's next input id, its position and key count
// advance by one, and the id is recorded at tokens[(position − first_positions[row]) · token_stride + row]. A row
// whose best logit is +inf, or that has no finite one, records kGreedyPickInfinite / kGreedyPickNone (the sampler
// refuses such rows) and feeds id 0 on. Padding rows (position < 0) are left alone.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "csrc/engine/engine.h"

namespace flashmpt {

struct GreedyStepParams {
  const float* logits = nullptr;  // [rows, row_stride] fp32
  int64_t row_stride = 0;
  int rows = 0, vocab = 0;  // ids ≥ vocab take no part (vocab ≤ row_stride)
  int banned_id = -1;       // < 0: none
  int32_t* ids = nullptr;        // [rows] the step's input ids: overwritten with the picks
  int32_t* positions = nullptr;  // [rows] advanced by one for real rows
  int32_t* seq_lens = nullptr;   // [rows] advanced by one for real rows
  const int32_t* first_positions = nullptr;  // [rows] each row's position at the chain's first step
  int32_t* tokens = nullptr;     // [steps, token_stride]
  int token_stride = 0;
  bool pdl = false;  // programmatic dependent launch (kernels/common/pdl.cuh)
};

cudaError_t greedyStep(const GreedyStepParams& params, cudaStream_t stream);

}  // namespace flashmpt
