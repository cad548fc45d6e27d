#include "csrc/engine/cuda/model_weights.h"

#include <algorithm>
#include <functional>
#include <memory>

#include "csrc/engine/cpu/cpu_ops.h"
#include "csrc/engine/weights.h"
#include "csrc/runtime/cuda_check.h"
#include "csrc/runtime/device_buffer.h"
#include "kernels/random/random_init.h"

namespace flashmpt {
namespace {

constexpr size_t kAlign = 256;
constexpr float kRandomStddev = 0.02f;
constexpr size_t kUploadChunkElements = size_t(4) << 20;

// Host → device upload through two pinned buffers: the host converts the next chunk into one while the previous
// chunk's copy out of the other is in flight (a copy from pageable memory would be staged by the driver and, waited
// for chunk by chunk, serialize reading and copying).
class PinnedUploader {
 public:
  PinnedUploader(size_t bytes, cudaStream_t stream) : stream_(stream) {
    for (int i = 0; i < 2; ++i) {
      buffers_[i] = PinnedBuffer(bytes);
      CUDA_CHECK(cudaEventCreateWithFlags(&copied_[i], cudaEventDisableTiming));
    }
  }
  ~PinnedUploader() {
    for (cudaEvent_t e : copied_) {
      if (e) cudaEventDestroy(e);
    }
  }
  PinnedUploader(const PinnedUploader&) = delete;
  PinnedUploader& operator=(const PinnedUploader&) = delete;

  // The buffer to fill next, once the copy that last read it has finished.
  void* staging() {
    if (used_[next_]) CUDA_CHECK(cudaEventSynchronize(copied_[next_]));
    return buffers_[next_].get();
  }
  // Copies `bytes` of the buffer staging() returned to dst, asynchronously.
  void upload(void* dst, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, buffers_[next_].get(), bytes, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaEventRecord(copied_[next_], stream_));
    used_[next_] = true;
    next_ ^= 1;
  }

 private:
  cudaStream_t stream_;
  PinnedBuffer buffers_[2];
  cudaEvent_t copied_[2] = {nullptr, nullptr};
  bool used_[2] = {false, false};
  int next_ = 0;
};

enum class Role { Matrix, NormWeight, Bias };

// One tensor of the checkpoint: canonical name, shape, role, and where its device pointer goes.
struct WeightSlot {
  std::string name;
  std::vector<int64_t> shape;
  Role role;
  std::function<void(void*)> bind;
  size_t offset = 0;
  int64_t elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

DType deviceDType(Role role, DType compute) { return role == Role::Matrix ? compute : DType::F32; }

std::vector<WeightSlot> weightSlots(const ModelConfig& c, ModelWeights* w) {
  const int64_t d = c.d_model, f = c.d_ff;
  std::vector<WeightSlot> slots;
  auto add = [&](std::string name, std::vector<int64_t> shape, Role role, std::function<void(void*)> bind) {
    slots.push_back(WeightSlot{std::move(name), std::move(shape), role, std::move(bind)});
  };
  auto asFloat = [](const float** dst) { return [dst](void* p) { *dst = static_cast<const float*>(p); }; };
  auto asRaw = [](const void** dst) { return [dst](void* p) { *dst = p; }; };
  // Adds "<prefix>.weight" [rows, cols] (a Linear) or [cols] (a LayerNorm), and "<prefix>.bias" when the
  // model has biases.
  auto linear = [&](const std::string& prefix, int64_t rows, int64_t cols, const void** weight, const float** bias) {
    add(prefix + ".weight", {rows, cols}, Role::Matrix, asRaw(weight));
    if (c.has_bias) add(prefix + ".bias", {rows}, Role::Bias, asFloat(bias));
  };
  auto norm = [&](const std::string& prefix, const float** weight, const float** bias) {
    add(prefix + ".weight", {d}, Role::NormWeight, asFloat(weight));
    if (c.has_bias) add(prefix + ".bias", {d}, Role::Bias, asFloat(bias));
  };

  w->layers.assign(size_t(c.n_layers), LayerWeights{});
  add("wte.weight", {c.vocab_size, d}, Role::Matrix, asRaw(&w->wte));
  for (int i = 0; i < c.n_layers; ++i) {
    LayerWeights& l = w->layers[size_t(i)];
    const std::string b = "blocks." + std::to_string(i) + ".";
    norm(b + "ln_1", &l.ln1_w, &l.ln1_b);
    linear(b + "attn.Wqkv", 3 * d, d, &l.wqkv, &l.bqkv);
    if (c.qk_ln) {
      norm(b + "attn.q_ln", &l.q_ln_w, &l.q_ln_b);
      norm(b + "attn.k_ln", &l.k_ln_w, &l.k_ln_b);
    }
    linear(b + "attn.out_proj", d, d, &l.wout, &l.bout);
    norm(b + "ln_2", &l.ln2_w, &l.ln2_b);
    linear(b + "mlp.up", f, d, &l.wup, &l.bup);
    linear(b + "mlp.down", d, f, &l.wdown, &l.bdown);
  }
  norm("ln_f", &w->lnf_w, &w->lnf_b);
  return slots;
}

size_t layout(std::vector<WeightSlot>& slots, DType compute) {
  size_t offset = 0;
  for (WeightSlot& s : slots) {
    s.offset = offset;
    const size_t bytes = size_t(s.elements()) * dtypeSize(deviceDType(s.role, compute));
    offset += (bytes + kAlign - 1) / kAlign * kAlign;
  }
  return offset;
}

void fillRandom(const WeightSlot& slot, void* dst, const EngineOptions& o, cudaStream_t stream) {
  RandomInitParams p;
  p.out = dst;
  p.n = slot.elements();
  p.dtype = deviceDType(slot.role, o.compute_dtype);
  p.mean = slot.role == Role::NormWeight ? 1.f : 0.f;
  p.stddev = slot.role == Role::Matrix ? kRandomStddev : 0.f;
  p.stream = cpu::normalStream(o.seed, slot.name.c_str());
  CUDA_CHECK(randomInit(p, stream));
}

}  // namespace

int64_t modelWeightBytes(const ModelConfig& config, DType compute_dtype) {
  ModelWeights scratch;
  std::vector<WeightSlot> slots = weightSlots(config, &scratch);
  return int64_t(layout(slots, compute_dtype));
}

ModelWeights loadModelWeights(const EngineOptions& o, cudaStream_t stream) {
  ModelWeights w;
  std::vector<WeightSlot> slots = weightSlots(o.config, &w);
  const size_t bytes = layout(slots, o.compute_dtype);
  CheckpointReader reader(o.tensors, o.on_progress);
  if (!o.random_weights) {
    // Every tensor present and well-formed before a byte of device memory is taken.
    for (const WeightSlot& s : slots) reader.require(s.name, s.shape);
  }
  w.arena = DeviceBuffer(bytes);
  auto* base = w.arena.as<uint8_t>();
  std::unique_ptr<PinnedUploader> uploader;
  if (!o.random_weights) uploader = std::make_unique<PinnedUploader>(kUploadChunkElements * sizeof(float), stream);
  for (const WeightSlot& s : slots) {
    void* dst = base + s.offset;
    s.bind(dst);
    if (o.random_weights) {
      fillRandom(s, dst, o, stream);
      continue;
    }
    const DType dtype = deviceDType(s.role, o.compute_dtype);
    const size_t elementBytes = dtypeSize(dtype);
    reader.stream(
        s.name, s.shape, dtype, kUploadChunkElements, [&] { return uploader->staging(); },
        [&](const void*, size_t first, size_t count) {
          uploader->upload(static_cast<uint8_t*>(dst) + first * elementBytes, count * elementBytes);
        });
  }
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return w;
}

}  // namespace flashmpt
