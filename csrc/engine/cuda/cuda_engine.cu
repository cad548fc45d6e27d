// The CUDA backend of Engine: weights, KV cache and workspace allocated once at load; prefill runs in
// chunks of the workspace's rows; decode steps run through per-bucket CUDA graphs, the candidate top-K right
// after them. Calls are serialized by a mutex (the binding runs them on worker threads); sequence bookkeeping
// has its own lock (SequenceSlots), so the JS thread never waits for a call. Every CUDA failure surfaces as a
// FlashError with the engine left usable.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <string>

#include "csrc/engine/candidates.h"
#include "csrc/engine/cuda/decode_graphs.h"
#include "csrc/engine/cuda/forward.h"
#include "csrc/engine/cuda/model_weights.h"
#include "csrc/engine/engine.h"
#include "csrc/engine/sequence_slots.h"
#include "csrc/engine/weights.h"
#include "csrc/runtime/byte_size.h"
#include "csrc/runtime/cuda_check.h"
#include "csrc/runtime/device_buffer.h"
#include "kernels/kv/paged_kv.h"
#include "kernels/attention/attention_params.h"
#include "kernels/gemm/gemm.h"
#include "kernels/norm/layernorm.h"
#include "kernels/sampling/greedy.h"
#include "kernels/sampling/greedy_ref.h"
#include "kernels/sampling/topk.h"

namespace flashmpt {
namespace {

// Prefill chunk: rows of activations the workspace holds (a longer prompt runs as several extends).
constexpr int kPrefillRows = 2048;
static_assert(kMaxCandidates <= kTopKMax, "the top-K kernel takes every candidate count");

// One decode group's candidates as the top-K kernel leaves them: values [rows, k], ids [rows, k], lse [rows].
constexpr size_t kCandidateFloats = size_t(kDecodeRows) * (2 * kMaxCandidates + 1);
// decodeGreedy's device record: first positions, then the picks of every step; they come back through the
// candidates' pinned buffer.
constexpr size_t kGreedyInts = size_t(kDecodeRows) * (1 + kMaxGreedySteps);
static_assert(kMaxGreedyRows <= kDecodeRows, "a greedy chain runs in one decode group");
static_assert(kMaxPromptSequences <= kDecodeRows, "a prompts pass's block tables and logits rows fit one decode group");
static_assert(kGreedyInts - kDecodeRows <= kCandidateFloats, "the picks fit the pinned candidates buffer");

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

void validate(const EngineOptions& o) {
  const ModelConfig& c = o.config;
  if (o.compute_dtype != DType::BF16 && o.compute_dtype != DType::F16 && o.compute_dtype != DType::F32) {
    fail("E_INVALID_ARGUMENT", "the CUDA engine computes in bf16, f16 or f32");
  }
  validateModelConfig(c);
  const int headDim = c.d_model / c.n_heads;
  if (headDim > 128 || headDim % 8 != 0) {
    fail("E_DEVICE", "the CUDA attention kernels take head_dim up to 128 in multiples of 8, this model has " +
                         std::to_string(headDim) + " (use device 'cpu')");
  }
  if (c.d_model % 8 != 0 || c.d_ff % 8 != 0) fail("E_DEVICE", "the CUDA GEMMs need d_model and d_ff divisible by 8");
  if (c.d_model > kLayerNormMaxCols) {
    fail("E_DEVICE", "the CUDA LayerNorm takes d_model up to " + std::to_string(kLayerNormMaxCols) + " (use device 'cpu')");
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
        max_sequences_(o.max_sequences),
        slots_(o.max_sequences, resolvedKvBlocks(o), o.kv_tokens) {
    useDevice();
    // Rows of one prefill pass: a prompt's chunk, or several sequences' prompts together (forwardPrompts).
    const int rows = int(std::max<int64_t>(std::min<int64_t>(kv_tokens_ * max_sequences_, kPrefillRows), kDecodeRows));
    checkMemory(o, rows);
    CUDA_CHECK(gemmPrepare());
    stream_ = std::make_unique<Stream>();
    const cudaStream_t stream = stream_->get();

    weights_ = loadModelWeights(o, stream);

    const size_t elementBytes = dtypeSize(dtype_);
    kv_.blocks = resolvedKvBlocks(o);
    kv_.block_stride = int64_t(kKvBlockTokens) * config_.d_model;
    kv_.layer_stride = kv_.block_stride * kv_.blocks;
    kv_.table_stride = slots_.tableStride();
    const size_t kvBytes = size_t(kv_.layer_stride) * config_.n_layers * elementBytes;
    kv_.k = DeviceBuffer(kvBytes);
    kv_.v = DeviceBuffer(kvBytes);
    // Zeros: decode padding rows read row 0 of block 0, which must hold finite values.
    CUDA_CHECK(cudaMemsetAsync(kv_.k.get(), 0, kvBytes, stream));
    CUDA_CHECK(cudaMemsetAsync(kv_.v.get(), 0, kvBytes, stream));

    ws_ = allocateWorkspace(config_, dtype_, rows, kv_tokens_);
    if (!config_.alibi_slopes.empty()) {
      alibi_ = DeviceBuffer(config_.alibi_slopes.size() * sizeof(float));
      CUDA_CHECK(cudaMemcpyAsync(alibi_.get(), config_.alibi_slopes.data(), alibi_.bytes(), cudaMemcpyHostToDevice,
                                 stream));
    }
    // Token ids of a prefill pass, then the decode step's ids, table rows, positions and sequence lengths, then
    // the block-table rows of the call's sequences (kDecodeRows = kMaxPromptSequences), then a prompts pass's
    // table row and position of each row, then its packed prompts' first rows and lengths (PassRows::packed).
    const size_t stepInts = 3 * size_t(rows) + 4 * size_t(kDecodeRows) + size_t(kDecodeRows) * size_t(kv_.table_stride) +
                            2 * size_t(kMaxPromptSequences);
    step_ = DeviceBuffer(stepInts * sizeof(int32_t));
    host_step_ = PinnedBuffer(stepInts * sizeof(int32_t));
    candidates_ = DeviceBuffer(kCandidateFloats * sizeof(float));
    host_candidates_ = PinnedBuffer(kCandidateFloats * sizeof(float));
    host_logits_ = PinnedBuffer(size_t(kDecodeRows) * config_.vocab_size * sizeof(float));
    top_k_workspace_ = DeviceBuffer(topKWorkspaceFloats(kDecodeRows, config_.vocab_size, kMaxCandidates) * sizeof(float));
    step_logits_ = DeviceBuffer(stepLogitsBytes());
    prompt_rows_ = DeviceBuffer(promptRowsBytes());
    greedy_ = DeviceBuffer(kGreedyInts * sizeof(int32_t));
    // Read after every call (the binding's memory figures): fixed from here on, so computed once.
    workspace_bytes_ =
        int64_t(flashmpt::workspaceBytes(config_, dtype_, ws_.rows, kv_tokens_) + step_.bytes() + decodeCallBytes());
    CUDA_CHECK(cudaStreamSynchronize(stream));

    state_.config = &config_;
    state_.dtype = dtype_;
    state_.kv_tokens = kv_tokens_;
    state_.weights = &weights_;
    state_.kv = &kv_;
    state_.ws = &ws_;
    state_.alibi_slopes = alibi_.as<float>();
    state_.wgmma_decode = max_sequences_ >= kWgmmaDecodeMinSequences;
  }

  ~CudaEngine() override {
    cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_->get());
  }

  int createSequence() override { return slots_.create(); }
  void releaseSequence(int seq) override { slots_.release(seq); }
  int64_t sequenceLength(int seq) const override { return slots_.length(seq); }

  void forward(int seq, const int32_t* ids, int64_t n, bool all_logits, float* out) override {
    std::lock_guard<std::mutex> lock(call_mutex_);
    useDevice();
    last_rows_ = 0;  // this call overwrites ws_.logits
    if (n <= 0) fail("E_INVALID_ARGUMENT", "forward needs at least one token");
    checkIds(ids, n);
    SequenceSlots::Claim claim(slots_, &seq, 1, n);
    // One token is a decode step: the graph path, with identical results.
    if (n == 1) {
      enqueueDecode(claim, 0, ids, 1);
      readLogits(ws_.logits, 0, out, 1);
      claim.commit();
      return;
    }

    if (all_logits) {
      prefillChunks(claim, 0, ids, n, out);
    } else {
      prefillChunks(claim, 0, ids, n, nullptr);
      enqueuePromptsHead(1);
      readLogits(ws_.logits, 0, out, 1);
    }
    claim.commit();
  }

  void forwardPrompts(const int* seqs, const int32_t* ids, const int64_t* lengths, int n, float* out) override {
    prefillPrompts(seqs, ids, lengths, n, [&] { readLogits(ws_.logits, 0, out, n); });
  }

  void forwardPromptsCandidates(const int* seqs, const int32_t* ids, const int64_t* lengths, int n, int k,
                                int sampleable_vocab, int32_t* out_ids, float* out_logits, float* out_lse) override {
    checkCandidateRequest(k, sampleable_vocab, config_.vocab_size);
    prefillPrompts(seqs, ids, lengths, n, [&] {
      readCandidates(0, n, k, sampleable_vocab, out_ids, out_logits, out_lse);
      last_rows_ = n;
    });
  }

  void decodeBatch(const int* seqs, const int32_t* ids, int n, float* out) override {
    decodeStep(seqs, ids, n, [&](int first, int rows) {
      readLogits(ws_.logits, 0, out + int64_t(first) * config_.vocab_size, rows);
    });
  }

  void decodeBatchCandidates(const int* seqs, const int32_t* ids, int n, int k, int sampleable_vocab,
                             int32_t* out_ids, float* out_logits, float* out_lse) override {
    checkCandidateRequest(k, sampleable_vocab, config_.vocab_size);
    decodeStep(seqs, ids, n, [&](int first, int rows) {
      readCandidates(first, rows, k, sampleable_vocab, out_ids, out_logits, out_lse);
    });
  }

  void decodeGreedy(const int* seqs, const int32_t* ids, int n, int steps, int sampleable_vocab, int banned_id,
                    int32_t* out) override {
    std::lock_guard<std::mutex> lock(call_mutex_);
    useDevice();
    last_rows_ = 0;
    checkGreedyRequest(n, steps, sampleable_vocab, config_.vocab_size);
    checkIds(ids, n);
    SequenceSlots::Claim claim(slots_, seqs, n, steps);
    const cudaStream_t stream = stream_->get();
    if (!fusedAttention(config_, dtype_)) {
      // Eager steps (the naive attention reads key counts on the host): each step's rows come back to feed the next.
      std::vector<int32_t> next(ids, ids + n);
      std::vector<float> rows(size_t(n) * size_t(config_.vocab_size));
      for (int step = 0; step < steps; ++step) {
        enqueueDecodePass(uploadDecodeInputs(claim, 0, next.data(), n, step), false);
        readLogits(ws_.logits, 0, rows.data(), n);
        ref::greedyPickRows(rows.data(), config_.vocab_size, n, sampleable_vocab, banned_id, out + int64_t(step) * n,
                            next.data());
      }
    } else {
      const int bucket = uploadDecodeInputs(claim, 0, ids, n);
      int32_t* positions = deviceDecodeInputs() + 2 * kDecodeRows;
      CUDA_CHECK(cudaMemcpyAsync(greedy_.get(), positions, kDecodeRows * sizeof(int32_t), cudaMemcpyDeviceToDevice, stream));
      // Graph-constant for the chain: read by the captured greedy kernel through these members' values at capture,
      // so a call with another vocabulary or banned id captures afresh.
      if (sampleable_vocab != greedy_vocab_ || banned_id != greedy_banned_id_) greedy_graphs_.reset();
      greedy_vocab_ = sampleable_vocab;
      greedy_banned_id_ = banned_id;
      for (int step = 0; step < steps; ++step) {
        greedy_graphs_.run(bucket, stream, [&](int rows) { enqueueDecodePass(rows, true); });
      }
      int32_t* host = host_candidates_.as<int32_t>();
      const int32_t* tokens = greedy_.as<int32_t>() + kDecodeRows;
      CUDA_CHECK(cudaMemcpyAsync(host, tokens, size_t(steps) * kDecodeRows * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
      synchronize();
      for (int step = 0; step < steps; ++step) std::copy_n(host + size_t(step) * kDecodeRows, n, out + int64_t(step) * n);
    }
    claim.commit();
    last_rows_ = n;
  }

  void lastLogits(int row, float* out) override {
    std::lock_guard<std::mutex> lock(call_mutex_);
    useDevice();
    checkLastLogitsRow(row, last_rows_);
    readLogits(last_rows_ > kDecodeRows ? step_logits_ : ws_.logits, row, out, 1);
  }

  int64_t weightBytes() const override { return int64_t(weights_.arena.bytes()); }
  int64_t kvCacheBytes() const override { return int64_t(kv_.k.bytes() + kv_.v.bytes()); }
  int64_t kvBlocks() const override { return kv_.blocks; }
  int64_t freeKvBlocks() const override { return slots_.freeBlocks(); }
  int64_t workspaceBytes() const override { return workspace_bytes_; }

 private:
  void useDevice() const { CUDA_CHECK(cudaSetDevice(device_)); }
  void synchronize() const { CUDA_CHECK(cudaStreamSynchronize(stream_->get())); }

  // Each prompt's last row of the residual stream, for the head of a prompts call (kMaxPromptSequences ≤ kDecodeRows
  // rows, so the head's rows fit ws_.x).
  size_t promptRowsBytes() const { return size_t(kMaxPromptSequences) * size_t(config_.d_model) * sizeof(float); }

  // Every row of a decode step that spans several groups (ws_.logits holds one group's): none for engines whose
  // sequences fit one group.
  size_t stepLogitsBytes() const {
    return max_sequences_ > kDecodeRows ? size_t(max_sequences_) * size_t(config_.vocab_size) * sizeof(float) : 0;
  }

  // Device memory of decodeBatchCandidates, decodeGreedy, lastLogits and the prompts' kept rows beyond the forward
  // pass's workspace.
  size_t decodeCallBytes() const {
    return kCandidateFloats * sizeof(float) +
           topKWorkspaceFloats(kDecodeRows, config_.vocab_size, kMaxCandidates) * sizeof(float) + stepLogitsBytes() +
           kGreedyInts * sizeof(int32_t) + promptRowsBytes();
  }

  // Weights, KV cache and workspace against the device's free memory, before anything is allocated: a model that
  // cannot fit fails at once with the figures and what would fit, not on whichever allocation runs out.
  void checkMemory(const EngineOptions& o, int rows) const {
    size_t freeBytes = 0, totalBytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&freeBytes, &totalBytes));
    const double free = double(freeBytes);
    const double weights = double(modelWeightBytes(config_, dtype_));
    const double kvPerToken = 2.0 * config_.d_model * config_.n_layers * dtypeSize(dtype_);  // K and V, all layers
    const int64_t kvBlocks = resolvedKvBlocks(o);
    const double kv = kvPerToken * double(kvBlocks) * kKvBlockTokens;
    const double work = double(flashmpt::workspaceBytes(config_, dtype_, rows, kv_tokens_) + decodeCallBytes());
    if (weights + kv + work <= free) return;

    const std::string device = "cuda:" + std::to_string(device_);
    const double room = free - weights - work;
    std::string advice = "load the model on a GPU with more free memory";
    if (room < kvPerToken) {
      advice = "the weights and workspace alone do not fit: " + advice;
    } else {
      // What would fit instead, approximately (the workspace shrinks a little with maxContext, so this errs low).
      const int64_t tokensFit = int64_t(room / kvPerToken) / kKvBlockTokens * kKvBlockTokens;
      advice = "lower kvCacheTokens to about " + std::to_string(tokensFit) +
               " (its default is maxSequences × maxContext), or " + advice;
    }
    const std::string dtype = dtype_ == DType::F32 ? "f32" : dtype_ == DType::F16 ? "f16" : "bf16";  // as loadModel spells it
    fail("E_OUT_OF_MEMORY",
         device + " cannot hold this model: it needs " + formatGiB(weights) + " of weights (" + dtype + ") + " +
             formatGiB(kv) + " of KV cache (" + std::to_string(kvBlocks) + " blocks × " +
             std::to_string(kKvBlockTokens) + " tokens × " + std::to_string(config_.n_layers) +
             " layers × 2 (K, V) × d_model " + std::to_string(config_.d_model) + " × " +
             std::to_string(dtypeSize(dtype_)) + " bytes) + " + formatGiB(work) + " of workspace = " +
             formatGiB(weights + kv + work) + ", but " + device + " has " + formatGiB(free) + " free of " +
             formatGiB(double(totalBytes)) + "; " + advice);
  }

  void checkIds(const int32_t* ids, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= config_.vocab_size) {
        fail("E_TOKEN_RANGE", "token id " + std::to_string(ids[i]) + " at " + std::to_string(i) + " is outside [0, " +
                                  std::to_string(config_.vocab_size) + ")");
      }
    }
  }

  // Runs n ids of claim row i in chunks of the workspace's rows: the logits of every row into all_logits when given,
  // else the last row of the residual stream into row i of prompt_rows_ (for enqueuePromptsHead).
  void prefillChunks(const SequenceSlots::Claim& claim, int i, const int32_t* ids, int64_t n, float* all_logits) {
    const cudaStream_t stream = stream_->get();
    const int64_t vocab = config_.vocab_size;
    int32_t* hostIds = host_step_.as<int32_t>();
    int32_t* deviceIds = step_.as<int32_t>();
    const size_t tableBytes = size_t(kv_.table_stride) * sizeof(int32_t);
    std::memcpy(hostTables(), claim.blockTable(i), tableBytes);
    CUDA_CHECK(cudaMemcpyAsync(deviceTables(), hostTables(), tableBytes, cudaMemcpyHostToDevice, stream));
    for (int64_t done = 0; done < n;) {
      const int rows = int(std::min<int64_t>(ws_.rows, n - done));
      std::memcpy(hostIds, ids + done, size_t(rows) * sizeof(int32_t));
      CUDA_CHECK(cudaMemcpyAsync(deviceIds, hostIds, size_t(rows) * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
      PassRows pass;
      pass.rows = rows;
      pass.ids = deviceIds;
      pass.block_tables = deviceTables();
      pass.position0 = int(claim.start(i) + done);
      enqueueLayers(state_, pass, stream);
      if (all_logits) {
        for (int row0 = 0; row0 < rows; row0 += kDecodeRows) {
          const int group = std::min(kDecodeRows, rows - row0);
          enqueueHead(state_, row0, group, stream, false);
          readLogits(ws_.logits, 0, all_logits + (done + row0) * vocab, group);
        }
      } else if (done + rows == n) {
        keepPromptRow(rows - 1, i);
      }
      synchronize();  // the pinned ids buffer is reused by the next chunk
      done += rows;
    }
  }

  // Prefill of whole prompts (forwardPrompts, forwardPromptsCandidates): passes of whole prompts while they fit the
  // workspace's rows (a longer prompt runs alone, chunk by chunk, and so does every prompt where the GEMMs' sums for a
  // row would depend on the pass's row count); each prompt's last row of the residual stream is kept, and one head
  // over them leaves prompt i's logits in ws_.logits row i for `read`, before the sequences take the prompts.
  template <class Read>
  void prefillPrompts(const int* seqs, const int32_t* ids, const int64_t* lengths, int n, Read&& read) {
    std::lock_guard<std::mutex> lock(call_mutex_);
    useDevice();
    last_rows_ = 0;  // this call overwrites ws_.logits
    const int64_t total = checkPromptsRequest(lengths, n);
    checkIds(ids, total);
    SequenceSlots::Claim claim(slots_, seqs, n, lengths);
    const bool shared = gemmRowInvariance(dtype_);
    for (int first = 0; first < n;) {
      if (!shared || lengths[first] > ws_.rows) {
        prefillChunks(claim, first, ids, lengths[first], nullptr);
        ids += lengths[first++];
        continue;
      }
      int count = 0;
      int64_t rows = 0;
      while (first + count < n && rows + lengths[first + count] <= ws_.rows) rows += lengths[first + count++];
      enqueuePrompts(claim, first, count, ids, lengths + first);
      synchronize();  // the pinned inputs are free again
      ids += rows;
      first += count;
    }
    enqueuePromptsHead(n);
    read();
    claim.commit();
  }

  // Row `row` of the residual stream (a prompt's last) to row `keep` of prompt_rows_.
  void keepPromptRow(int row, int keep) {
    const size_t rowBytes = size_t(config_.d_model) * sizeof(float);
    CUDA_CHECK(cudaMemcpyAsync(prompt_rows_.as<float>() + size_t(keep) * config_.d_model,
                               ws_.x.as<float>() + size_t(row) * config_.d_model, rowBytes, cudaMemcpyDeviceToDevice,
                               stream_->get()));
  }

  // The head over rows 0 .. n − 1 of prompt_rows_: their logits land in ws_.logits rows 0 .. n − 1. One head for all
  // of a call's prompts, whatever passes ran them (the head's sums do not depend on its row count).
  void enqueuePromptsHead(int n) {
    const cudaStream_t stream = stream_->get();
    CUDA_CHECK(cudaMemcpyAsync(ws_.x.get(), prompt_rows_.get(), size_t(n) * config_.d_model * sizeof(float),
                               cudaMemcpyDeviceToDevice, stream));
    enqueueHead(state_, 0, n, stream, false);
  }

  // Copies the candidates of ws_.logits rows 0 .. rows − 1 (top-k and log-sum-exp) to the outputs' rows from `first`.
  void readCandidates(int first, int rows, int k, int sampleable_vocab, int32_t* out_ids, float* out_logits,
                      float* out_lse) {
    // The rows' values, ids and LSEs side by side, so one copy brings them over.
    float* values = candidates_.as<float>();
    int32_t* indices = reinterpret_cast<int32_t*>(values + rows * k);
    float* lse = values + 2 * rows * k;
    TopKParams p;
    p.logits = ws_.logits.as<float>();
    p.row_stride = config_.vocab_size;
    p.rows = rows;
    p.vocab = sampleable_vocab;  // ids from sampleable_vocab on take no part
    p.k = k;
    p.values = values;
    p.indices = indices;
    p.lse = lse;
    p.workspace = top_k_workspace_.as<float>();
    CUDA_CHECK(topK(p, stream_->get()));
    const size_t floats = size_t(rows) * size_t(2 * k + 1);
    CUDA_CHECK(cudaMemcpyAsync(host_candidates_.get(), values, floats * sizeof(float), cudaMemcpyDeviceToHost,
                               stream_->get()));
    synchronize();
    const float* host = host_candidates_.as<float>();
    std::memcpy(out_logits + int64_t(first) * k, host, size_t(rows) * k * sizeof(float));
    std::memcpy(out_ids + int64_t(first) * k, host + rows * k, size_t(rows) * k * sizeof(int32_t));
    std::memcpy(out_lse + first, host + 2 * rows * k, size_t(rows) * sizeof(float));
  }

  // Enqueues one pass over the whole prompts of claim rows [first, first + count) (ids concatenated, lengths[i] ≥ 1
  // each, ≤ ws_.rows together) and keeps each prompt's last row of the residual stream in prompt_rows_ row
  // first + i.
  void enqueuePrompts(const SequenceSlots::Claim& claim, int first, int count, const int32_t* ids,
                      const int64_t* lengths) {
    const cudaStream_t stream = stream_->get();
    const size_t stride = size_t(kv_.table_stride);
    // After the kDecodeRows block-table rows: each row's table row, then each row's position.
    int32_t* hostRows = hostTables() + kDecodeRows * stride;
    int32_t* hostPositions = hostRows + ws_.rows;
    int32_t* hostPacked = hostPositions + ws_.rows;
    int32_t* deviceRows = deviceTables() + kDecodeRows * stride;
    std::vector<PromptSegment> segments(static_cast<size_t>(count));
    int rows = 0;
    bool fresh = true;
    for (int i = 0; i < count; ++i) {
      const int start = int(claim.start(first + i)), length = int(lengths[i]);
      std::memcpy(hostTables() + i * stride, claim.blockTable(first + i), stride * sizeof(int32_t));
      segments[size_t(i)] = {rows, length, start, deviceTables() + i * stride};
      for (int t = 0; t < length; ++t) {
        hostRows[rows + t] = i;
        hostPositions[rows + t] = start + t;
      }
      rows += length;
      fresh = fresh && start == 0;
    }
    PassRows pass;
    if (fresh && fusedAttention(config_, dtype_)) {
      // The prompts of the short-prompt tile attend packed (forward.h): their first rows, then their lengths.
      std::vector<const PromptSegment*> packed;
      for (const PromptSegment& seg : segments) {
        if (seg.attendsPacked()) packed.push_back(&seg);
      }
      pass.packed_count = int(packed.size());
      for (int j = 0; j < pass.packed_count; ++j) {
        hostPacked[j] = packed[size_t(j)]->row0;
        hostPacked[pass.packed_count + j] = packed[size_t(j)]->rows;
        pass.packed_longest = std::max(pass.packed_longest, packed[size_t(j)]->rows);
      }
      if (pass.packed_count > 0) pass.packed = deviceRows + 2 * ws_.rows;
    }
    std::memcpy(host_step_.get(), ids, size_t(rows) * sizeof(int32_t));
    CUDA_CHECK(cudaMemcpyAsync(step_.get(), host_step_.get(), size_t(rows) * sizeof(int32_t), cudaMemcpyHostToDevice,
                               stream));
    CUDA_CHECK(cudaMemcpyAsync(deviceRows, hostRows, (2 * size_t(ws_.rows) + 2 * size_t(count)) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaMemcpyAsync(deviceTables(), hostTables(), size_t(count) * stride * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream));
    pass.rows = rows;
    pass.ids = step_.as<int32_t>();
    pass.block_tables = deviceTables();
    pass.segments = segments.data();
    pass.segment_count = count;
    pass.table_rows = deviceRows;
    pass.positions = deviceRows + ws_.rows;
    enqueueLayers(state_, pass, stream);
    for (int i = 0; i < count; ++i) keepPromptRow(segments[size_t(i)].row0 + segments[size_t(i)].rows - 1, first + i);
  }

  // The block-table rows of the current call, after the step's ids and scalars in step_ / host_step_.
  int32_t* hostTables() { return host_step_.as<int32_t>() + ws_.rows + 4 * kDecodeRows; }
  int32_t* deviceTables() { return step_.as<int32_t>() + ws_.rows + 4 * kDecodeRows; }

  // Copies `rows` ≤ kDecodeRows rows of logits from row `row0` of a device buffer to the host and waits for the
  // stream: through pinned memory, since a copy into pageable memory (a fresh JS buffer) costs the driver's
  // staging on top (52-77 µs for one 200 KB row on an H100 host, bench/NOTES-decode.md).
  void readLogits(const DeviceBuffer& logits, int row0, float* out, int rows) {
    const size_t bytes = size_t(rows) * size_t(config_.vocab_size) * sizeof(float);
    CUDA_CHECK(cudaMemcpyAsync(host_logits_.get(), logits.as<float>() + size_t(row0) * config_.vocab_size, bytes,
                               cudaMemcpyDeviceToHost, stream_->get()));
    synchronize();
    std::memcpy(out, host_logits_.get(), bytes);
  }

  // One decode step in groups of kDecodeRows. After each group's forward, readGroup(first, rows) reads its logits
  // from ws_.logits and returns with the stream idle: the next group reuses the pinned step inputs.
  template <class ReadGroup>
  void decodeStep(const int* seqs, const int32_t* ids, int n, ReadGroup&& readGroup) {
    std::lock_guard<std::mutex> lock(call_mutex_);
    useDevice();
    last_rows_ = 0;
    if (n <= 0) fail("E_INVALID_ARGUMENT", "a decode step needs at least one sequence");
    checkIds(ids, n);
    SequenceSlots::Claim claim(slots_, seqs, n, 1);
    const size_t vocab = size_t(config_.vocab_size);
    for (int first = 0; first < n; first += kDecodeRows) {
      const int rows = std::min(kDecodeRows, n - first);
      enqueueDecode(claim, first, ids + first, rows);
      if (n > kDecodeRows) {
        CUDA_CHECK(cudaMemcpyAsync(step_logits_.as<float>() + size_t(first) * vocab, ws_.logits.get(),
                                   size_t(rows) * vocab * sizeof(float), cudaMemcpyDeviceToDevice, stream_->get()));
      }
      readGroup(first, rows);
    }
    claim.commit();
    last_rows_ = n;
  }

  // Enqueues the forward of claim rows [first, first + n), n ≤ kDecodeRows, one new token each; padding rows
  // fill the bucket. The logits land in ws_.logits.
  void enqueueDecode(const SequenceSlots::Claim& claim, int first, const int32_t* ids, int n) {
    const int bucket = uploadDecodeInputs(claim, first, ids, n);
    if (fusedAttention(config_, dtype_)) {
      graphs_.run(bucket, stream_->get(), [&](int rows) { enqueueDecodePass(rows, false); });
    } else {
      enqueueDecodePass(bucket, false);
    }
  }

  // Device step inputs (after a prefill chunk's ids in step_): ids, table rows, positions, key counts.
  int32_t* deviceDecodeInputs() { return step_.as<int32_t>() + ws_.rows; }

  // The layers and head of one decode step over the uploaded inputs; with `greedy`, the GPU's pick feeds the next
  // step (kernels/sampling/greedy.h).
  void enqueueDecodePass(int rows, bool greedy) {
    const cudaStream_t stream = stream_->get();
    int32_t* device = deviceDecodeInputs();
    PassRows pass;
    pass.rows = rows;
    pass.ids = device;
    pass.decode = true;
    pass.block_tables = deviceTables();
    pass.table_rows = device + kDecodeRows;
    pass.positions = device + 2 * kDecodeRows;
    pass.seq_lens = device + 3 * kDecodeRows;
    pass.host_seq_lens = host_step_.as<int32_t>() + ws_.rows + 3 * kDecodeRows;
    enqueueLayers(state_, pass, stream);
    enqueueHead(state_, 0, rows, stream, true);
    if (!greedy) return;
    GreedyStepParams g;
    g.logits = ws_.logits.as<float>();
    g.row_stride = config_.vocab_size;
    g.rows = rows;
    g.vocab = greedy_vocab_;
    g.banned_id = greedy_banned_id_;
    g.ids = device;
    g.positions = device + 2 * kDecodeRows;
    g.seq_lens = device + 3 * kDecodeRows;
    g.first_positions = greedy_.as<int32_t>();
    g.tokens = greedy_.as<int32_t>() + kDecodeRows;
    g.token_stride = kDecodeRows;
    g.pdl = true;
    CUDA_CHECK(greedyStep(g, stream));
  }

  // Fills and uploads the step inputs of claim rows [first, first + n) at `offset` tokens past each claim's start;
  // returns the bucket (rows, padding included) the step runs.
  int uploadDecodeInputs(const SequenceSlots::Claim& claim, int first, const int32_t* ids, int n, int64_t offset = 0) {
    const cudaStream_t stream = stream_->get();
    const int bucket = DecodeGraphs::bucketRows(n);
    int32_t* host = host_step_.as<int32_t>() + ws_.rows;
    int32_t* device = deviceDecodeInputs();
    int32_t *hIds = host, *hRows = host + kDecodeRows, *hPositions = host + 2 * kDecodeRows,
            *hLens = host + 3 * kDecodeRows;
    const size_t stride = size_t(kv_.table_stride);
    for (int i = 0; i < bucket; ++i) {
      const bool real = i < n;
      hIds[i] = real ? ids[i] : 0;
      hRows[i] = i;
      hPositions[i] = real ? int32_t(claim.start(first + i) + offset) : -1;
      hLens[i] = real ? hPositions[i] + 1 : 1;
      // A padding row reads row 0 of block 0 (zeros, or a live sequence's finite values) and writes nothing.
      if (real) {
        std::memcpy(hostTables() + i * stride, claim.blockTable(first + i), stride * sizeof(int32_t));
      } else {
        std::fill_n(hostTables() + i * stride, stride, 0);
      }
    }
    CUDA_CHECK(cudaMemcpyAsync(device, host, 4 * kDecodeRows * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaMemcpyAsync(deviceTables(), hostTables(), size_t(bucket) * stride * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream));
    return bucket;
  }

  ModelConfig config_;
  DType dtype_;
  int device_;
  int64_t kv_tokens_;
  int max_sequences_;
  SequenceSlots slots_;
  std::mutex call_mutex_;
  int last_rows_ = 0;  // rows of the latest decode step (or prompts' candidates) lastLogits can copy; 0 after a forward

  std::unique_ptr<Stream> stream_;
  ModelWeights weights_;
  KvCache kv_;
  Workspace ws_;
  DeviceBuffer alibi_;
  DeviceBuffer step_;
  PinnedBuffer host_step_;
  DeviceBuffer candidates_;       // kCandidateFloats
  PinnedBuffer host_candidates_;  // kCandidateFloats
  PinnedBuffer host_logits_;      // kDecodeRows rows of logits
  DeviceBuffer top_k_workspace_;
  DeviceBuffer step_logits_;  // stepLogitsBytes()
  DeviceBuffer prompt_rows_;  // promptRowsBytes()
  DecodeGraphs graphs_;
  // decodeGreedy: the steps' graphs (each ends in the greedy pick), the rule they were captured with, and on the
  // device each row's first position then kMaxGreedySteps × kDecodeRows picks.
  DecodeGraphs greedy_graphs_;
  int greedy_vocab_ = 0, greedy_banned_id_ = -1;
  DeviceBuffer greedy_;
  int64_t workspace_bytes_ = 0;
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
