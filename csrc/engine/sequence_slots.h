// Sequence slots as engine.h's threading contract wants them, shared by the CPU and CUDA engines. Handles are
// generation-tagged (generation · slots + index), so a released handle stays invalid after its slot is reused.
// create, release and length take one short lock and never wait for a running call; a release that comes while
// a call uses the slot takes effect when that call ends.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

namespace flashmpt {

class SequenceSlots {
 public:
  explicit SequenceSlots(int count);

  int create();  // E_OUT_OF_MEMORY when every slot is taken
  void release(int handle);
  int64_t length(int handle) const;

  // The slots of one forward or decode call, from construction to destruction: each handle validated (live,
  // not repeated, room for `tokens` more within `capacity`) and marked running. Lengths advance by `tokens`
  // only once commit() was called, so a failed call leaves its sequences as they were.
  class Claim {
   public:
    Claim(SequenceSlots& slots, const int* handles, int n, int64_t tokens, int64_t capacity);
    ~Claim();
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;

    int slot(int i) const { return slots_[size_t(i)]; }
    int64_t start(int i) const { return starts_[size_t(i)]; }  // the length before this call
    void commit() { committed_ = true; }

   private:
    SequenceSlots& owner_;
    std::vector<int> slots_;
    std::vector<int64_t> starts_;
    int64_t tokens_;
    bool committed_ = false;
  };

 private:
  struct Slot {
    bool used = false;
    bool running = false;  // a call is appending to it
    bool release_when_done = false;
    int64_t length = 0;
    uint32_t generation = 0;  // bumped on each reuse

    void free() {
      used = running = release_when_done = false;
      length = 0;
    }
  };

  size_t checkedSlot(int handle) const;  // with mutex_ held; E_INVALID_ARGUMENT for a dead handle

  mutable std::mutex mutex_;
  std::vector<Slot> slots_;
  uint32_t generations_;  // generations that fit an int handle
};

}  // namespace flashmpt
