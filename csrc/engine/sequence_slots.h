// Sequence slots as engine.h's threading contract wants them, shared by the CPU and CUDA engines. Handles are
// generation-tagged (generation · slots + index), so a released handle stays invalid after its slot is reused.
// create, release and length take one short lock and never wait for a running call; a release that comes while
// a call uses the slot takes effect when that call ends.
//
// The slots also own the paged KV cache's blocks (kernels/kv/paged_kv.h): a call that appends tokens takes
// the blocks they need from one pool, a released sequence gives its blocks back.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

namespace flashmpt {

class SequenceSlots {
 public:
  // `kv_blocks` blocks of kKvBlockTokens in the pool; a sequence holds at most `context_tokens`.
  SequenceSlots(int count, int64_t kv_blocks, int64_t context_tokens);

  int create();  // E_OUT_OF_MEMORY when every slot is taken
  void release(int handle);
  int64_t length(int handle) const;
  int64_t freeBlocks() const;
  // Entries of a block-table row: the most blocks one sequence can hold.
  int tableStride() const { return int(table_stride_); }

  // The slots of one forward or decode call, from construction to destruction: each handle validated (live,
  // not repeated, room for `tokens` more within the context) and marked running, and the KV blocks for those
  // tokens taken from the pool (E_OUT_OF_MEMORY naming the blocks when it runs dry; nothing is taken then).
  // Lengths advance by `tokens` only once commit() was called, so a failed call leaves its sequences as they
  // were (blocks it took stay with their sequence for the next call).
  class Claim {
   public:
    Claim(SequenceSlots& slots, const int* handles, int n, int64_t tokens);
    // tokens[i] for handles[i].
    Claim(SequenceSlots& slots, const int* handles, int n, const int64_t* tokens);
    ~Claim();
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;

    int slot(int i) const { return slots_[size_t(i)]; }
    int64_t start(int i) const { return starts_[size_t(i)]; }  // the length before this call
    // Row i's block-table row (tableStride() entries; those past its blocks are 0), as of this call.
    const int32_t* blockTable(int i) const { return table_.data() + size_t(i) * size_t(owner_.table_stride_); }
    void commit() { committed_ = true; }

   private:
    SequenceSlots& owner_;
    std::vector<int> slots_;
    std::vector<int64_t> starts_;
    std::vector<int32_t> table_;
    std::vector<int64_t> tokens_;
    bool committed_ = false;
  };

 private:
  struct Slot {
    bool used = false;
    bool running = false;  // a call is appending to it
    bool release_when_done = false;
    int64_t length = 0;
    uint32_t generation = 0;  // bumped on each reuse
    std::vector<int32_t> blocks;
  };

  size_t checkedSlot(int handle) const;  // with mutex_ held; E_INVALID_ARGUMENT for a dead handle
  void free(Slot& slot);                 // with mutex_ held: the slot and its blocks back to the pools

  mutable std::mutex mutex_;
  std::vector<Slot> slots_;
  uint32_t generations_;  // generations that fit an int handle
  std::vector<int32_t> free_blocks_;
  int64_t total_blocks_, context_tokens_, table_stride_;
};

}  // namespace flashmpt
