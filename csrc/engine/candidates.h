// What both engines check of the arguments of forwardPrompts, decodeBatchCandidates, decodeGreedy and lastLogits.
#pragma once
#include <string>

#include "csrc/engine/engine.h"
#include "csrc/runtime/errors.h"

namespace flashmpt {

inline void checkSampleableVocab(int sampleable_vocab, int vocab_size) {
  if (sampleable_vocab < 1 || sampleable_vocab > vocab_size) {
    fail("E_INVALID_ARGUMENT", "sampleable vocabulary " + std::to_string(sampleable_vocab) + " is outside [1, " +
                                   std::to_string(vocab_size) + "]");
  }
}

inline void checkCandidateRequest(int k, int sampleable_vocab, int vocab_size) {
  checkSampleableVocab(sampleable_vocab, vocab_size);
  if (k < 1 || k > kMaxCandidates || k > sampleable_vocab) {
    fail("E_INVALID_ARGUMENT", "candidate count " + std::to_string(k) + " is outside [1, min(" +
                                   std::to_string(kMaxCandidates) + ", " + std::to_string(sampleable_vocab) + ")]");
  }
}

inline void checkGreedyRequest(int n, int steps, int sampleable_vocab, int vocab_size) {
  if (n < 1 || n > kMaxGreedyRows) {
    fail("E_INVALID_ARGUMENT", "decodeGreedy takes 1 to " + std::to_string(kMaxGreedyRows) + " sequences, got " +
                                   std::to_string(n));
  }
  if (steps < 1 || steps > kMaxGreedySteps) {
    fail("E_INVALID_ARGUMENT", "decodeGreedy takes 1 to " + std::to_string(kMaxGreedySteps) + " steps, got " +
                                   std::to_string(steps));
  }
  checkSampleableVocab(sampleable_vocab, vocab_size);
}

// Returns the ids of all prompts together.
inline int64_t checkPromptsRequest(const int64_t* lengths, int n) {
  if (n < 1 || n > kMaxPromptSequences) {
    fail("E_INVALID_ARGUMENT", "forwardPrompts takes 1 to " + std::to_string(kMaxPromptSequences) +
                                   " sequences, got " + std::to_string(n));
  }
  int64_t total = 0;
  for (int i = 0; i < n; ++i) {
    if (lengths[i] < 1) {
      fail("E_INVALID_ARGUMENT", "prompt " + std::to_string(i) + " has " + std::to_string(lengths[i]) +
                                     " tokens; each needs at least one");
    }
    total += lengths[i];
  }
  return total;
}

// `rows`: the rows of the latest decode step, 0 when a forward ran since (or none has run).
inline void checkLastLogitsRow(int row, int rows) {
  if (row < 0 || row >= rows) {
    fail("E_INVALID_ARGUMENT", "the latest decode step has no row " + std::to_string(row) + " (it has " +
                                   std::to_string(rows) + "; a forward since clears them)");
  }
}

}  // namespace flashmpt
