#include "csrc/engine/sequence_slots.h"

#include <algorithm>
#include <limits>
#include <string>

#include "csrc/engine/engine.h"
#include "csrc/runtime/errors.h"
#include "kernels/kv/paged_kv.h"

namespace flashmpt {
namespace {

int64_t blocksFor(int64_t tokens) { return (tokens + kKvBlockTokens - 1) / kKvBlockTokens; }

}  // namespace

int64_t resolvedKvBlocks(const EngineOptions& o) {
  return o.kv_blocks > 0 ? o.kv_blocks : int64_t(o.max_sequences) * blocksFor(o.kv_tokens);
}

SequenceSlots::SequenceSlots(int count, int64_t kv_blocks, int64_t context_tokens)
    : total_blocks_(kv_blocks), context_tokens_(context_tokens), table_stride_(blocksFor(context_tokens)) {
  if (count <= 0) fail("E_INVALID_ARGUMENT", "max_sequences must be positive");
  if (kv_blocks <= 0 || kv_blocks > std::numeric_limits<int32_t>::max()) fail("E_INVALID_ARGUMENT", "kv_blocks out of range");
  slots_.resize(size_t(count));
  generations_ = uint32_t(std::numeric_limits<int32_t>::max() / count);
  free_blocks_.reserve(size_t(kv_blocks));
  // Handed out from the back: block 0 first.
  for (int64_t b = kv_blocks - 1; b >= 0; --b) free_blocks_.push_back(int32_t(b));
}

void SequenceSlots::free(Slot& slot) {
  free_blocks_.insert(free_blocks_.end(), slot.blocks.rbegin(), slot.blocks.rend());
  slot.blocks.clear();
  slot.used = slot.running = slot.release_when_done = false;
  slot.length = 0;
}

int64_t SequenceSlots::freeBlocks() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return int64_t(free_blocks_.size());
}

int SequenceSlots::create() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = slots_[i];
    if (!slot.used) {
      slot.used = true;
      slot.generation = (slot.generation + 1) % generations_;
      return int(slot.generation * slots_.size() + i);
    }
  }
  fail("E_OUT_OF_MEMORY", "all " + std::to_string(slots_.size()) + " sequence slots are in use (maxSequences)");
}

void SequenceSlots::release(int handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  Slot& slot = slots_[checkedSlot(handle)];
  if (slot.running) {
    slot.release_when_done = true;
  } else {
    free(slot);
  }
}

int64_t SequenceSlots::length(int handle) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return slots_[checkedSlot(handle)].length;
}

size_t SequenceSlots::checkedSlot(int handle) const {
  const size_t index = size_t(handle) % slots_.size();
  const Slot& slot = slots_[index];
  if (handle < 0 || size_t(handle) / slots_.size() != slot.generation || !slot.used || slot.release_when_done) {
    fail("E_INVALID_ARGUMENT", "no sequence " + std::to_string(handle) + " (released or never created)");
  }
  return index;
}

SequenceSlots::Claim::Claim(SequenceSlots& slots, const int* handles, int n, int64_t tokens)
    : Claim(slots, handles, n, std::vector<int64_t>(size_t(std::max(n, 0)), tokens).data()) {}

SequenceSlots::Claim::Claim(SequenceSlots& slots, const int* handles, int n, const int64_t* tokens)
    : owner_(slots), tokens_(tokens, tokens + std::max(n, 0)) {
  std::lock_guard<std::mutex> lock(owner_.mutex_);
  const int64_t capacity = owner_.context_tokens_;
  for (int i = 0; i < n; ++i) {
    const int index = int(owner_.checkedSlot(handles[i]));
    const int64_t tokens = tokens_[size_t(i)];
    if (std::find(slots_.begin(), slots_.end(), index) != slots_.end()) {
      fail("E_INVALID_ARGUMENT", "sequence " + std::to_string(handles[i]) + " appears twice in one call");
    }
    const int64_t length = owner_.slots_[size_t(index)].length;
    if (length + tokens > capacity) {
      fail("E_CONTEXT_LENGTH", "sequence " + std::to_string(handles[i]) + " holds " + std::to_string(length) +
                                   " tokens; " + std::to_string(tokens) + " more exceed the context of " +
                                   std::to_string(capacity) + " tokens (kvTokens)");
    }
    slots_.push_back(index);
    starts_.push_back(length);
  }
  int64_t needed = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    needed += std::max<int64_t>(0, blocksFor(starts_[i] + tokens_[i]) - int64_t(owner_.slots_[size_t(slots_[i])].blocks.size()));
  }
  if (needed > int64_t(owner_.free_blocks_.size())) {
    fail("E_OUT_OF_MEMORY", "the KV cache is full: this call needs " + std::to_string(needed) + " more blocks of " +
                                std::to_string(kKvBlockTokens) + " tokens, " + std::to_string(owner_.free_blocks_.size()) +
                                " of " + std::to_string(owner_.total_blocks_) +
                                " are free (release sequences, or load with a larger kvCacheTokens)");
  }
  table_.assign(slots_.size() * size_t(owner_.table_stride_), 0);
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = owner_.slots_[size_t(slots_[i])];
    while (int64_t(slot.blocks.size()) < blocksFor(starts_[i] + tokens_[i])) {
      slot.blocks.push_back(owner_.free_blocks_.back());
      owner_.free_blocks_.pop_back();
    }
    std::copy(slot.blocks.begin(), slot.blocks.end(), table_.begin() + int64_t(i) * owner_.table_stride_);
    slot.running = true;
  }
}

SequenceSlots::Claim::~Claim() {
  std::lock_guard<std::mutex> lock(owner_.mutex_);
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& slot = owner_.slots_[size_t(slots_[i])];
    if (committed_) slot.length += tokens_[i];
    slot.running = false;
    if (slot.release_when_done) owner_.free(slot);
  }
}

}  // namespace flashmpt
