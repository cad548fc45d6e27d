#include "csrc/engine/weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "csrc/runtime/errors.h"

namespace flashmpt {

size_t dtypeSize(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
  }
  return "?";
}

namespace {

float bitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint32_t floatToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

float halfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  const uint32_t mantissa = h & 0x3ff;
  if (exponent == 0x1f) return bitsToFloat(sign | 0x7f800000u | (mantissa << 13));  // inf, nan
  if (exponent != 0) return bitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa × 2^-24 is exact in fp32.
  const float magnitude = std::ldexp(float(mantissa), -24);
  return sign ? -magnitude : magnitude;
}

uint16_t floatToHalf(float f) {
  const uint32_t bits = floatToBits(f);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) return sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0);  // inf, nan
  if (abs >= 0x477ff000u) return sign | 0x7c00;  // rounds past 65504: inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero): round |f| / 2^-24 to the nearest integer, ties to even.
    const float scaled = bitsToFloat(abs) * 16777216.0f;
    return sign | uint16_t(std::nearbyint(scaled));
  }
  const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);  // round to nearest even at bit 13
  return sign | uint16_t((rounded - (112u << 23)) >> 13);
}

float bf16ToFloat(uint16_t h) { return bitsToFloat(uint32_t(h) << 16); }

uint16_t floatToBf16(float f) {
  const uint32_t bits = floatToBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // keep nan a nan
  return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

float loadAsFloat(const uint8_t* src, DType dtype, size_t i) {
  switch (dtype) {
    case DType::F32: {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      return f;
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      return halfToFloat(h);
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      return bf16ToFloat(h);
    }
  }
  return 0.f;
}

void storeFloat(uint8_t* dst, DType dtype, size_t i, float value) {
  switch (dtype) {
    case DType::F32: std::memcpy(dst + 4 * i, &value, 4); return;
    case DType::F16: {
      const uint16_t h = floatToHalf(value);
      std::memcpy(dst + 2 * i, &h, 2);
      return;
    }
    case DType::BF16: {
      const uint16_t h = floatToBf16(value);
      std::memcpy(dst + 2 * i, &h, 2);
      return;
    }
  }
}

std::string shapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

constexpr size_t kChunkElements = size_t(1) << 20;

}  // namespace

namespace {

// One loop per (source, destination) pair, the dtypes template constants: with the dtype switch inside the loop
// the compiler could not vectorize it, and fp32 → bf16 ran at 1.3 GB/s of checkpoint (the .bin load's bottleneck).
template <DType kSrc, DType kDst>
void convertTyped(const uint8_t* in, uint8_t* out, size_t count) {
  for (size_t i = 0; i < count; ++i) storeFloat(out, kDst, i, loadAsFloat(in, kSrc, i));
}

template <DType kDst>
void convertTo(const uint8_t* in, DType src_dtype, uint8_t* out, size_t count) {
  switch (src_dtype) {
    case DType::F32: return convertTyped<DType::F32, kDst>(in, out, count);
    case DType::F16: return convertTyped<DType::F16, kDst>(in, out, count);
    case DType::BF16: return convertTyped<DType::BF16, kDst>(in, out, count);
  }
}

}  // namespace

void convertElements(const void* src, DType src_dtype, void* dst, DType dst_dtype, size_t count) {
  if (src_dtype == dst_dtype) {
    std::memcpy(dst, src, count * dtypeSize(src_dtype));
    return;
  }
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  switch (dst_dtype) {
    case DType::F32: return convertTo<DType::F32>(in, src_dtype, out, count);
    case DType::F16: return convertTo<DType::F16>(in, src_dtype, out, count);
    case DType::BF16: return convertTo<DType::BF16>(in, src_dtype, out, count);
  }
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("E_CHECKPOINT", "cannot open weights file " + path + ": " + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int err = errno;
    ::close(fd);
    fail("E_CHECKPOINT", "cannot stat weights file " + path + ": " + std::strerror(err));
  }
  size_ = uint64_t(info.st_size);
  if (size_ > 0) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (mapped == MAP_FAILED) fail("E_CHECKPOINT", "cannot memory-map weights file " + path + ": " + std::strerror(err));
    data_ = static_cast<uint8_t*>(mapped);
    ::madvise(data_, size_, MADV_SEQUENTIAL);
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

void MappedFile::releasePages(uint64_t offset, uint64_t bytes) const {
  if (!data_ || bytes == 0) return;
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t begin = offset / page * page;
  const uint64_t end = std::min(size_, (offset + bytes + page - 1) / page * page);
  if (end > begin) ::madvise(data_ + begin, end - begin, MADV_DONTNEED);
}

CheckpointReader::CheckpointReader(const std::vector<TensorSource>& tensors,
                                   std::function<void(uint64_t, uint64_t)> on_progress)
    : on_progress_(std::move(on_progress)) {
  for (const TensorSource& tensor : tensors) {
    by_name_.emplace(tensor.name, &tensor);
    bytes_total_ += tensor.bytes;
  }
}

const TensorSource& CheckpointReader::require(const std::string& name, const std::vector<int64_t>& shape) {
  const auto found = by_name_.find(name);
  if (found == by_name_.end()) fail("E_CHECKPOINT", "checkpoint has no tensor " + name);
  const TensorSource& tensor = *found->second;
  if (tensor.shape != shape) {
    fail("E_CHECKPOINT", "tensor " + name + " has shape " + shapeText(tensor.shape) + ", expected " + shapeText(shape));
  }
  uint64_t elements = 1;
  for (int64_t dim : shape) elements *= uint64_t(dim);
  if (tensor.bytes / dtypeSize(tensor.dtype) != elements || tensor.bytes % dtypeSize(tensor.dtype) != 0) {
    fail("E_CHECKPOINT", "tensor " + name + " is " + std::to_string(tensor.bytes) + " bytes, but " + shapeText(shape) +
                             " " + dtypeName(tensor.dtype) + " needs " + std::to_string(elements * dtypeSize(tensor.dtype)));
  }
  const MappedFile* file = nullptr;
  bytesOf(tensor, &file);
  return tensor;
}

const uint8_t* CheckpointReader::bytesOf(const TensorSource& tensor, const MappedFile** file_out) {
  auto& slot = files_[tensor.file];
  if (!slot) slot = std::make_unique<MappedFile>(tensor.file);
  const MappedFile& file = *slot;
  if (tensor.offset > file.size() || tensor.bytes > file.size() - tensor.offset) {
    fail("E_CHECKPOINT", "tensor " + tensor.name + " (bytes " + std::to_string(tensor.offset) + ".." +
                             std::to_string(tensor.offset + tensor.bytes) + ") lies past the end of " + file.path() +
                             " (" + std::to_string(file.size()) + " bytes)");
  }
  *file_out = &file;
  return file.data() + tensor.offset;
}

void CheckpointReader::read(const std::string& name, const std::vector<int64_t>& shape, DType dst_dtype, void* dst) {
  auto* out = static_cast<uint8_t*>(dst);
  forEachChunk(name, shape, kChunkElements, [&](const uint8_t* src, DType src_dtype, size_t first, size_t count) {
    convertElements(src, src_dtype, out + first * dtypeSize(dst_dtype), dst_dtype, count);
  });
}

void CheckpointReader::stream(const std::string& name, const std::vector<int64_t>& shape, DType dst_dtype,
                              size_t chunk_elements, const std::function<void*()>& staging,
                              const std::function<void(const void*, size_t, size_t)>& sink) {
  forEachChunk(name, shape, chunk_elements, [&](const uint8_t* src, DType src_dtype, size_t first, size_t count) {
    void* chunk = staging();
    convertElements(src, src_dtype, chunk, dst_dtype, count);
    sink(chunk, first, count);
  });
}

void CheckpointReader::forEachChunk(const std::string& name, const std::vector<int64_t>& shape, size_t chunk_elements,
                                    const std::function<void(const uint8_t*, DType, size_t, size_t)>& fn) {
  const TensorSource& tensor = require(name, shape);
  const MappedFile* file = nullptr;
  const uint8_t* src = bytesOf(tensor, &file);
  const size_t src_size = dtypeSize(tensor.dtype);
  const size_t elements = size_t(tensor.bytes / src_size);
  chunk_elements = std::max<size_t>(1, chunk_elements);
  for (size_t first = 0; first < elements; first += chunk_elements) {
    const size_t count = std::min(chunk_elements, elements - first);
    fn(src + first * src_size, tensor.dtype, first, count);
    file->releasePages(tensor.offset + first * src_size, count * src_size);
    bytes_done_ += count * src_size;
    if (on_progress_) on_progress_(bytes_done_, bytes_total_);
  }
}

}  // namespace flashmpt
