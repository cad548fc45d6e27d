// Checkpoint bytes → engine buffers. TypeScript parses the checkpoint metadata into TensorSource records;
// this side memory-maps each file once, re-checks what could corrupt memory (range inside the file,
// bytes == elements × dtype size, the shape the engine expects) and converts the dtype while copying.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "csrc/engine/engine.h"

namespace flashmpt {

size_t dtypeSize(DType dtype);
const char* dtypeName(DType dtype);

// Converts `count` elements; fp16/bf16 → fp32 is exact. Narrowing to fp16/bf16 rounds to nearest even.
void convertElements(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t count);

// A whole file mapped read-only; unmapped on destruction.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws FlashError E_CHECKPOINT
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  const uint8_t* data() const { return data_; }
  // Drops the pages of [offset, offset + bytes) from this process once they have been consumed, so a
  // load's resident set stays near one copy of the weights (the page cache keeps them while memory allows).
  void releasePages(uint64_t offset, uint64_t bytes) const;

 private:
  std::string path_;
  uint64_t size_ = 0;
  uint8_t* data_ = nullptr;
};

// Looks tensors up by canonical name and moves their bytes out of the mapped files.
class CheckpointReader {
 public:
  // on_progress (optional) hears the bytes read so far over the bytes of all `tensors`, after each chunk.
  explicit CheckpointReader(const std::vector<TensorSource>& tensors,
                            std::function<void(uint64_t, uint64_t)> on_progress = nullptr);

  bool has(const std::string& name) const { return by_name_.count(name) != 0; }
  // The tensor `name` after checking it has `shape` and lies inside its file; maps the file on first use.
  // Throws E_CHECKPOINT naming the tensor otherwise.
  const TensorSource& require(const std::string& name, const std::vector<int64_t>& shape);

  // Converts the whole tensor into dst (elements of dst_dtype), chunk by chunk.
  void read(const std::string& name, const std::vector<int64_t>& shape, DType dst_dtype, void* dst);
  // For destinations that are not host memory (a device upload): converts the tensor in chunks of at most
  // chunk_elements, each into the buffer `staging()` returns (room for chunk_elements of dst_dtype, e.g. pinned
  // memory free for reuse), then hands it to `sink(data, first, count)`.
  void stream(const std::string& name, const std::vector<int64_t>& shape, DType dst_dtype, size_t chunk_elements,
              const std::function<void*()>& staging,
              const std::function<void(const void* data, size_t first, size_t count)>& sink);

 private:
  const uint8_t* bytesOf(const TensorSource& tensor, const MappedFile** file);
  // Calls fn(source bytes, source dtype, first element, count) per chunk, dropping consumed source pages.
  void forEachChunk(const std::string& name, const std::vector<int64_t>& shape, size_t chunk_elements,
                    const std::function<void(const uint8_t*, DType, size_t, size_t)>& fn);

  std::unordered_map<std::string, const TensorSource*> by_name_;
  std::unordered_map<std::string, std::unique_ptr<MappedFile>> files_;
  std::function<void(uint64_t, uint64_t)> on_progress_;
  uint64_t bytes_total_ = 0, bytes_done_ = 0;
};

}  // namespace flashmpt
