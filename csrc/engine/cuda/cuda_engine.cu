// The CUDA backend of Engine: weights, KV cache and workspace allocated once at load; prefill runs in
// chunks of the workspace's rows; decode steps run through per-bucket CUDA graphs. Calls are serialized
// by a mutex (the binding runs them on worker threads), and every CUDA failure surfaces as a FlashError
// with the engine left usable.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "csrc/engine/cuda/decode_graphs.h"
#include "csrc/engine/cuda/forward.h"
#include "csrc/engine/cuda/model_weights.h"
#include "csrc/engine/engine.h"
#include "csrc/engine/weights.h"
#include "csrc/runtime/cuda_check.h"
#include "csrc/runtime/device_buffer.h"
#include "kernels/attention/attention_params.h"
#include "kernels/gemm/gemm.h"

namespace flashmpt {
namespace {

// Prefill chunk: rows of activations the workspace holds (a longer prompt runs as several extends).
constexpr int kPrefillRows = 2048;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

class Stream {
 public:
  Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~Stream() {
    if (stream_) cudaStreamDestroy(stream_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

std::string gib(double bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f GiB", bytes / kGiB);
  return text;
}

void validate(const EngineOptions& o) {
  const ModelConfig& c = o.config;
  if (o.compute_dtype != DType::BF16 && o.compute_dtype != DType::F16) {
    fail("E_INVALID_ARGUMENT", "the CUDA engine computes in bf16 or f16");
  }
  if (c.d_model <= 0 || c.n_heads <= 0 || c.n_layers <= 0 || c.d_ff <= 0 || c.vocab_size <= 0 ||
      c.d_model % c.n_heads != 0) {
    fail("E_CONFIG", "model shape is not valid");
  }
  const int headDim = c.d_model / c.n_heads;
  if (headDim > 128 || headDim % 8 != 0) {
    fail("E_DEVICE", "the CUDA attention kernels take head_dim up to 128 in multiples of 8, this model has " +
                         std::to_string(headDim) + " (use device 'cpu')");
  }
  if (c.d_model % 8 != 0 || c.d_ff % 8 != 0) fail("E_DEVICE", "the CUDA GEMMs need d_model and d_ff divisible by 8");
  if (!c.alibi_slopes.empty() && int(c.alibi_slopes.size()) != c.n_heads) {
    fail("E_CONFIG", "alibi_slopes must hold one slope per head");
  }
  if (o.kv_tokens <= 0 || o.kv_tokens > (int64_t(1) << 24)) fail("E_INVALID_ARGUMENT", "kv_tokens out of range");
  if (o.max_sequences <= 0) fail("E_INVALID_ARGUMENT", "max_sequences must be positive");
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess) {
    cudaGetLastError();
    devices = 0;
  }
  if (o.device < 0 || o.device >= devices) {
    fail("E_DEVICE", "CUDA device " + std::to_string(o.device) + " does not exist (" + std::to_string(devices) +
                         " visible)");
  }
}

class CudaEngine final : public Engine {
 public:
  explicit CudaEngine(const EngineOptions& o)
      : config_(o.config),
        dtype_(o.compute_dtype),
        device_(o.device),
        kv_tokens_(o.kv_tokens),
        lengths_(size_t(o.max_sequences), 0),
        in_use_(size_t(o.max_sequences), false) {
    if (config_.softmax_scale <= 0.f) config_.softmax_scale = 1.f / std::sqrt(float(config_.d_model / config_.n_heads));
    useDevice();
    const int rows = int(std::max<int64_t>(std::min<int64_t>(kv_tokens_, kPrefillRows), kDecodeRows));
    checkMemory(o, rows);
    CUDA_CHECK(gemmPrepare());
    stream_ = std::make_unique<Stream>();
    const cudaStream_t stream = stream_->get();

    weights_ = loadModelWeights(o, stream);

    const size_t elementBytes = dtypeSize(dtype_);
    kv_.slot_stride = kv_tokens_ * config_.d_model;
    kv_.layer_stride = kv_.slot_stride * o.max_sequences;
    const size_t kvBytes = size_t(kv_.layer_stride) * config_.n_layers * elementBytes;
    kv_.k = DeviceBuffer(kvBytes);
    kv_.v = DeviceBuffer(kvBytes);
    // Zeros: decode padding rows read position 0 of slot 0, which must hold finite values.
    CUDA_CHECK(cudaMemsetAsync(kv_.k.get(), 0, kvBytes, stream));
    CUDA_CHECK(cudaMemsetAsync(kv_.v.get(), 0, kvBytes, stream));

    ws_ = allocateWorkspace(config_, dtype_, rows, kv_tokens_);
    if (!config_.alibi_slopes.empty()) {
      alibi_ = DeviceBuffer(config_.alibi_slopes.size() * sizeof(float));
      CUDA_CHECK(cudaMemcpyAsync(alibi_.get(), config_.alibi_slopes.data(), alibi_.bytes(), cudaMemcpyHostToDevice,
                                 stream));
    }
    // Token ids of a prefill chunk, then the decode step's ids, slots, positions and sequence lengths.
    const size_t stepInts = size_t(rows) + 4 * size_t(kDecodeRows);
    step_ = DeviceBuffer(stepInts * sizeof(int32_t));
    host_step_ = PinnedBuffer(stepInts * sizeof(int32_t));
    CUDA_CHECK(cudaStreamSynchronize(stream));

    state_.config = &config_;
    state_.dtype = dtype_;
    state_.kv_tokens = kv_tokens_;
    state_.weights = &weights_;
    state_.kv = &kv_;
    state_.ws = &ws_;
    state_.alibi_slopes = alibi_.as<float>();
  }

  ~CudaEngine() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_->get());
  }

  int createSequence() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < in_use_.size(); ++i) {
      if (!in_use_[i]) {
        in_use_[i] = true;
        lengths_[i] = 0;
        return int(i);
      }
    }
    fail("E_OUT_OF_MEMORY", "all " + std::to_string(in_use_.size()) + " sequence slots are in use (raise maxSequences)");
  }

  void releaseSequence(int seq) override {
    std::lock_guard<std::mutex> lock(mutex_);
    checkSequence(seq);
    in_use_[size_t(seq)] = false;
    lengths_[size_t(seq)] = 0;
  }

  int64_t sequenceLength(int seq) const override {
    std::lock_guard<std::mutex> lock(mutex_);
    checkSequence(seq);
    return lengths_[size_t(seq)];
  }

  void forward(int seq, const int32_t* ids, int64_t n, bool all_logits, float* out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    useDevice();
    checkSequence(seq);
    if (n <= 0) fail("E_INVALID_ARGUMENT", "forward needs at least one token");
    checkIds(ids, n);
    checkRoom(seq, n);
    // One token is a decode step: the graph path, with identical results.
    if (n == 1) return decodeRows(&seq, ids, 1, out);

    const cudaStream_t stream = stream_->get();
    const int64_t vocab = config_.vocab_size;
    const int64_t start = lengths_[size_t(seq)];
    int32_t* hostIds = host_step_.as<int32_t>();
    int32_t* deviceIds = step_.as<int32_t>();
    for (int64_t done = 0; done < n;) {
      const int rows = int(std::min<int64_t>(ws_.rows, n - done));
      std::memcpy(hostIds, ids + done, size_t(rows) * sizeof(int32_t));
      CUDA_CHECK(cudaMemcpyAsync(deviceIds, hostIds, size_t(rows) * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
      PassRows pass;
      pass.rows = rows;
      pass.ids = deviceIds;
      pass.slot = seq;
      pass.position0 = int(start + done);
      enqueueLayers(state_, pass, stream);
      if (all_logits) {
        for (int row0 = 0; row0 < rows; row0 += kDecodeRows) {
          const int group = std::min(kDecodeRows, rows - row0);
          enqueueHead(state_, row0, group, stream);
          copyLogits(out + (done + row0) * vocab, group);
        }
      } else if (done + rows == n) {
        enqueueHead(state_, rows - 1, 1, stream);
        copyLogits(out, 1);
      }
      CUDA_CHECK(cudaStreamSynchronize(stream));  // the pinned ids buffer is reused by the next chunk
      done += rows;
    }
    lengths_[size_t(seq)] = start + n;
  }

  void decodeBatch(const int* seqs, const int32_t* ids, int n, float* out) override {
    std::lock_guard<std::mutex> lock(mutex_);
    useDevice();
    if (n <= 0) fail("E_INVALID_ARGUMENT", "decodeBatch needs at least one sequence");
    std::vector<bool> seen(in_use_.size(), false);
    for (int i = 0; i < n; ++i) {
      checkSequence(seqs[i]);
      if (seen[size_t(seqs[i])]) fail("E_INVALID_ARGUMENT", "sequence " + std::to_string(seqs[i]) + " appears twice");
      seen[size_t(seqs[i])] = true;
      checkRoom(seqs[i], 1);
    }
    checkIds(ids, n);
    for (int i0 = 0; i0 < n; i0 += kDecodeRows) {
      const int group = std::min(kDecodeRows, n - i0);
      decodeRows(seqs + i0, ids + i0, group, out + int64_t(i0) * config_.vocab_size);
    }
  }

  int64_t weightBytes() const override { return int64_t(weights_.arena.bytes()); }
  int64_t kvCacheBytes() const override { return int64_t(kv_.k.bytes() + kv_.v.bytes()); }
  int64_t workspaceBytes() const override {
    return int64_t(flashmpt::workspaceBytes(config_, dtype_, ws_.rows, kv_tokens_) + step_.bytes());
  }

 private:
  void useDevice() const { CUDA_CHECK(cudaSetDevice(device_)); }

  // Weights, KV cache and workspace against the device's free memory, before anything is allocated.
  void checkMemory(const EngineOptions& o, int rows) const {
    size_t freeBytes = 0, totalBytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&freeBytes, &totalBytes));
    const double weights = double(modelWeightBytes(config_, dtype_));
    const double kv = 2.0 * double(kv_tokens_) * config_.d_model * config_.n_layers * o.max_sequences * dtypeSize(dtype_);
    const double work = double(flashmpt::workspaceBytes(config_, dtype_, rows, kv_tokens_));
    if (weights + kv + work > double(freeBytes)) {
      fail("E_OUT_OF_MEMORY", "the model needs " + gib(weights) + " of weights + " + gib(kv) + " of KV cache (" +
                                  std::to_string(o.max_sequences) + " sequences × " + std::to_string(kv_tokens_) +
                                  " tokens) + " + gib(work) + " of workspace, but the GPU has " + gib(double(freeBytes)) +
                                  " free; lower maxContext or maxSequences");
    }
  }

  void checkSequence(int seq) const {
    if (seq < 0 || size_t(seq) >= in_use_.size() || !in_use_[size_t(seq)]) {
      fail("E_INVALID_ARGUMENT", "sequence " + std::to_string(seq) + " is not an open sequence");
    }
  }

  void checkIds(const int32_t* ids, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= config_.vocab_size) {
        fail("E_TOKEN_RANGE", "token id " + std::to_string(ids[i]) + " at " + std::to_string(i) + " is outside [0, " +
                                  std::to_string(config_.vocab_size) + ")");
      }
    }
  }

  void checkRoom(int seq, int64_t n) const {
    if (lengths_[size_t(seq)] + n > kv_tokens_) {
      fail("E_CONTEXT_LENGTH", "sequence " + std::to_string(seq) + " holds " + std::to_string(lengths_[size_t(seq)]) +
                                   " tokens; " + std::to_string(n) + " more exceed the KV cache of " +
                                   std::to_string(kv_tokens_));
    }
  }

  void copyLogits(float* out, int rows) {
    CUDA_CHECK(cudaMemcpyAsync(out, ws_.logits.get(), size_t(rows) * config_.vocab_size * sizeof(float),
                               cudaMemcpyDeviceToHost, stream_->get()));
  }

  // One decode step for n ≤ kDecodeRows distinct, validated sequences; padding rows fill the bucket.
  void decodeRows(const int* seqs, const int32_t* ids, int n, float* out) {
    const cudaStream_t stream = stream_->get();
    const int bucket = DecodeGraphs::bucketRows(n);
    int32_t* host = host_step_.as<int32_t>() + ws_.rows;
    int32_t* device = step_.as<int32_t>() + ws_.rows;
    int32_t *hIds = host, *hSlots = host + kDecodeRows, *hPositions = host + 2 * kDecodeRows,
            *hLens = host + 3 * kDecodeRows;
    for (int i = 0; i < bucket; ++i) {
      const bool real = i < n;
      hIds[i] = real ? ids[i] : 0;
      hSlots[i] = real ? seqs[i] : 0;
      hPositions[i] = real ? int32_t(lengths_[size_t(seqs[i])]) : -1;
      hLens[i] = real ? hPositions[i] + 1 : 1;
    }
    CUDA_CHECK(cudaMemcpyAsync(device, host, 4 * kDecodeRows * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
    auto enqueue = [&](int rows) {
      PassRows pass;
      pass.rows = rows;
      pass.ids = device;
      pass.decode = true;
      pass.slots = device + kDecodeRows;
      pass.positions = device + 2 * kDecodeRows;
      pass.seq_lens = device + 3 * kDecodeRows;
      pass.host_slots = hSlots;
      pass.host_seq_lens = hLens;
      enqueueLayers(state_, pass, stream);
      enqueueHead(state_, 0, rows, stream);
    };
    if (fusedAttention(config_)) {
      graphs_.run(bucket, stream, enqueue);
    } else {
      enqueue(bucket);
    }
    copyLogits(out, n);
    CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int i = 0; i < n; ++i) ++lengths_[size_t(seqs[i])];
  }

  ModelConfig config_;
  DType dtype_;
  int device_;
  int64_t kv_tokens_;
  std::vector<int64_t> lengths_;
  std::vector<bool> in_use_;
  mutable std::mutex mutex_;

  std::unique_ptr<Stream> stream_;
  ModelWeights weights_;
  KvCache kv_;
  Workspace ws_;
  DeviceBuffer alibi_;
  DeviceBuffer step_;
  PinnedBuffer host_step_;
  DecodeGraphs graphs_;
  ForwardState state_;
};

}  // namespace

std::unique_ptr<Engine> createCudaEngine(const EngineOptions& options) {
  validate(options);
  return std::make_unique<CudaEngine>(options);
}

int cudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

}  // namespace flashmpt
