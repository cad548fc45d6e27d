#include "csrc/engine/sequence_slots.h"

#include <algorithm>
#include <limits>
#include <string>

#include "csrc/runtime/errors.h"

namespace flashmpt {

SequenceSlots::SequenceSlots(int count) {
  if (count <= 0) fail("E_INVALID_ARGUMENT", "max_sequences must be positive");
  slots_.resize(size_t(count));
  generations_ = uint32_t(std::numeric_limits<int32_t>::max() / count);
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
    slot.free();
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

SequenceSlots::Claim::Claim(SequenceSlots& slots, const int* handles, int n, int64_t tokens, int64_t capacity)
    : owner_(slots), tokens_(tokens) {
  std::lock_guard<std::mutex> lock(owner_.mutex_);
  for (int i = 0; i < n; ++i) {
    const int index = int(owner_.checkedSlot(handles[i]));
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
  for (int index : slots_) owner_.slots_[size_t(index)].running = true;
}

SequenceSlots::Claim::~Claim() {
  std::lock_guard<std::mutex> lock(owner_.mutex_);
  for (int index : slots_) {
    Slot& slot = owner_.slots_[size_t(index)];
    if (committed_) slot.length += tokens_;
    slot.running = false;
    if (slot.release_when_done) slot.free();
  }
}

}  // namespace flashmpt
