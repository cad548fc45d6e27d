// The CPU reference engine: exactly the model of DESIGN.md §1 in fp32, built from cpu_ops.
#include <algorithm>
#include <cmath>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "csrc/engine/candidates.h"
#include "csrc/engine/cpu/cpu_ops.h"
#include "csrc/engine/engine.h"
#include "csrc/engine/sequence_slots.h"
#include "csrc/engine/weights.h"
#include "csrc/runtime/byte_size.h"
#include "csrc/runtime/errors.h"
#include "kernels/sampling/greedy_ref.h"
#include "kernels/sampling/topk_ref.h"

namespace flashmpt {
namespace {

using cpu::ThreadPool;

// Prefill runs in passes of at most this many tokens, so activations stay small however long the prompt is
// (exact: a pass's attention reads the KV cache the earlier passes wrote).
constexpr int64_t kMaxRowsPerPass = 256;
constexpr float kInitStddev = 0.02f;

// A float array owned by the engine; empty when the tensor does not exist (biases with no_bias).
struct Buffer {
  std::unique_ptr<float[]> data;
  int64_t size = 0;
  const float* get() const { return data.get(); }
};

struct LayerWeights {
  Buffer ln1_w, ln1_b, wqkv, bqkv, q_ln_w, q_ln_b, k_ln_w, k_ln_b, wout, bout, ln2_w, ln2_b, wup, bup, wdown, bdown;
};

// One token of a pass: the block-table row of the sequence it extends (valid while the call's claim lives) and
// its position.
struct Row {
  const int32_t* blocks;
  int64_t pos;
};

class CpuEngine final : public Engine {
 public:
  explicit CpuEngine(const EngineOptions& options)
      : config_(options.config),
        kv_blocks_(resolvedKvBlocks(options)),
        pool_(options.threads),
        slots_(options.max_sequences, kv_blocks_, options.kv_tokens) {
    validateModelConfig(config_);
    loadWeights(options);
    layer_stride_ = kv_blocks_ * kKvBlockTokens * config_.d_model;
    const std::string kvShape = std::to_string(kv_blocks_) + " blocks × " + std::to_string(kKvBlockTokens) +
                                " tokens × " + std::to_string(config_.n_layers) + " layers × d_model " +
                                std::to_string(config_.d_model) +
                                " × 4 bytes; lower kvCacheTokens, or maxContext or maxSequences";
    k_cache_ = allocate(layer_stride_ * config_.n_layers, "the KV cache's keys (" + kvShape + ")");
    v_cache_ = allocate(layer_stride_ * config_.n_layers, "the KV cache's values (" + kvShape + ")");
  }

  int createSequence() override { return slots_.create(); }
  void releaseSequence(int seq) override { slots_.release(seq); }
  int64_t sequenceLength(int seq) const override { return slots_.length(seq); }

  void forward(int seq, const int32_t* ids, int64_t n, bool all_logits, float* out) override {
    last_rows_ = 0;
    if (n <= 0) fail("E_INVALID_ARGUMENT", "forward needs at least one token");
    checkIds(ids, n);
    SequenceSlots::Claim claim(slots_, &seq, 1, n);
    std::vector<Row> rows;
    for (int64_t first = 0; first < n; first += kMaxRowsPerPass) {
      const int64_t count = std::min(kMaxRowsPerPass, n - first);
      rows.clear();
      for (int64_t i = 0; i < count; ++i) rows.push_back({claim.blockTable(0), claim.start(0) + first + i});
      const bool last_pass = first + count == n;
      if (all_logits) {
        runPass(rows, ids + first, 0, out + first * config_.vocab_size);
      } else {
        runPass(rows, ids + first, last_pass ? count - 1 : count, out);
      }
    }
    claim.commit();
  }

  void forwardPromptsCandidates(const int* seqs, const int32_t* ids, const int64_t* lengths, int n, int k,
                                int sampleable_vocab, int32_t* out_ids, float* out_logits, float* out_lse) override {
    checkCandidateRequest(k, sampleable_vocab, config_.vocab_size);
    checkPromptsRequest(lengths, n);
    last_logits_.resize(size_t(n) * size_t(config_.vocab_size));
    forwardPrompts(seqs, ids, lengths, n, last_logits_.data());
    last_rows_ = n;
    candidatesOfLastRows(n, k, sampleable_vocab, out_ids, out_logits, out_lse);
  }

  void forwardPrompts(const int* seqs, const int32_t* ids, const int64_t* lengths, int n, float* out) override {
    last_rows_ = 0;
    const int64_t total = checkPromptsRequest(lengths, n);
    checkIds(ids, total);
    SequenceSlots::Claim claim(slots_, seqs, n, lengths);
    // Passes of whole prompts while they fit kMaxRowsPerPass rows; a longer prompt runs alone, pass by pass.
    std::vector<Row> rows;
    std::vector<int64_t> logitRows;
    const int32_t* passIds = ids;
    int outRow = 0;
    auto flush = [&] {
      if (rows.empty()) return;
      runPass(rows, passIds, logitRows, out + int64_t(outRow) * config_.vocab_size);
      passIds += rows.size();
      outRow += int(logitRows.size());
      rows.clear();
      logitRows.clear();
    };
    for (int i = 0; i < n; ++i) {
      if (int64_t(rows.size()) + lengths[i] > kMaxRowsPerPass) flush();
      for (int64_t first = 0; first < lengths[i]; first += kMaxRowsPerPass) {
        const int64_t count = std::min(kMaxRowsPerPass, lengths[i] - first);
        for (int64_t t = 0; t < count; ++t) rows.push_back({claim.blockTable(i), claim.start(i) + first + t});
        if (first + count == lengths[i]) logitRows.push_back(int64_t(rows.size()) - 1);
        if (first + count < lengths[i]) flush();
      }
    }
    flush();
    claim.commit();
  }

  void decodeBatch(const int* seqs, const int32_t* ids, int n, float* out) override {
    decodeStep(seqs, ids, n);
    std::copy_n(last_logits_.data(), size_t(n) * size_t(config_.vocab_size), out);
  }

  void decodeBatchCandidates(const int* seqs, const int32_t* ids, int n, int k, int sampleable_vocab,
                             int32_t* out_ids, float* out_logits, float* out_lse) override {
    checkCandidateRequest(k, sampleable_vocab, config_.vocab_size);
    decodeStep(seqs, ids, n);
    candidatesOfLastRows(n, k, sampleable_vocab, out_ids, out_logits, out_lse);
  }

  void decodeGreedy(const int* seqs, const int32_t* ids, int n, int steps, int sampleable_vocab, int banned_id,
                    int32_t* out) override {
    last_rows_ = 0;
    checkGreedyRequest(n, steps, sampleable_vocab, config_.vocab_size);
    checkIds(ids, n);
    SequenceSlots::Claim claim(slots_, seqs, n, steps);
    std::vector<int32_t> next(ids, ids + n);
    for (int step = 0; step < steps; ++step) {
      runDecodeRows(claim, step, next.data(), n);
      ref::greedyPickRows(last_logits_.data(), config_.vocab_size, n, sampleable_vocab, banned_id,
                          out + int64_t(step) * n, next.data());
    }
    claim.commit();
    last_rows_ = n;
  }

  void lastLogits(int row, float* out) override {
    checkLastLogitsRow(row, last_rows_);
    std::copy_n(last_logits_.data() + int64_t(row) * config_.vocab_size, config_.vocab_size, out);
  }

  int64_t weightBytes() const override { return weight_bytes_; }
  int64_t kvCacheBytes() const override { return 2 * k_cache_.size * int64_t(sizeof(float)); }
  int64_t kvBlocks() const override { return kv_blocks_; }
  int64_t freeKvBlocks() const override { return slots_.freeBlocks(); }
  int64_t workspaceBytes() const override {
    int64_t floats = 0;
    for (const auto* buffer : {&x_, &h_, &qkv_, &attn_, &tmp_, &ff_, &last_logits_}) floats += int64_t(buffer->size());
    return floats * int64_t(sizeof(float));
  }

 private:
  // One decode step for n sequences: their logits land in last_logits_ (n x vocab_size).
  void decodeStep(const int* seqs, const int32_t* ids, int n) {
    last_rows_ = 0;
    if (n <= 0) fail("E_INVALID_ARGUMENT", "a decode step needs at least one sequence");
    checkIds(ids, n);
    SequenceSlots::Claim claim(slots_, seqs, n, 1);
    runDecodeRows(claim, 0, ids, n);
    claim.commit();
    last_rows_ = n;
  }

  // The k candidates and log-sum-exp of each of the first n rows of last_logits_.
  void candidatesOfLastRows(int n, int k, int sampleable_vocab, int32_t* out_ids, float* out_logits, float* out_lse) {
    pool_.parallelFor(n, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        ref::topK(last_logits_.data() + r * config_.vocab_size, sampleable_vocab, k, out_logits + r * k,
                  out_ids + r * k, out_lse + r);
      }
    });
  }

  // One new token for each of the claim's n sequences, at `offset` past its start: logits into last_logits_.
  void runDecodeRows(const SequenceSlots::Claim& claim, int64_t offset, const int32_t* ids, int n) {
    std::vector<Row> rows;
    for (int i = 0; i < n; ++i) rows.push_back({claim.blockTable(i), claim.start(i) + offset});
    last_logits_.resize(size_t(n) * size_t(config_.vocab_size));
    for (int first = 0; first < n; first += int(kMaxRowsPerPass)) {
      const int count = std::min(int(kMaxRowsPerPass), n - first);
      std::vector<Row> pass(rows.begin() + first, rows.begin() + first + count);
      runPass(pass, ids + first, 0, last_logits_.data() + int64_t(first) * config_.vocab_size);
    }
  }

  void checkIds(const int32_t* ids, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) {
      if (ids[i] < 0 || ids[i] >= config_.vocab_size) {
        fail("E_TOKEN_RANGE", "token id " + std::to_string(ids[i]) + " at index " + std::to_string(i) +
                                  " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
      }
    }
  }

  // `what` names the buffer in the E_OUT_OF_MEMORY error, which also names the bytes asked for.
  Buffer allocate(int64_t floats, const std::string& what) {
    Buffer buffer;
    try {
      buffer.data.reset(new float[size_t(floats)]);  // uninitialized: pages are touched only when written
    } catch (const std::bad_alloc&) {
      const double bytes = double(floats) * sizeof(float);
      fail("E_OUT_OF_MEMORY", "cannot allocate " + formatGiB(bytes) + " (" + std::to_string(int64_t(bytes)) +
                                  " bytes) of host memory for " + what);
    }
    buffer.size = floats;
    return buffer;
  }

  // How a random-weight model fills a tensor: as PyTorch initializes it (norm weights 1, biases 0).
  enum class RandomInit { Normal, Ones, Zeros };

  // Fills a weight from the checkpoint, or with the benchmark's deterministic random values.
  Buffer weight(const EngineOptions& options, CheckpointReader& reader, const std::string& name,
                const std::vector<int64_t>& shape, RandomInit init) {
    int64_t floats = 1;
    for (int64_t dim : shape) floats *= dim;
    Buffer buffer = allocate(floats, "weight '" + name + "'");
    if (!options.random_weights) {
      reader.read(name, shape, DType::F32, buffer.data.get());
    } else if (init == RandomInit::Normal) {
      cpu::fillNormal(buffer.data.get(), floats, kInitStddev, cpu::normalStream(options.seed, name.c_str()), &pool_);
    } else {
      std::fill(buffer.data.get(), buffer.data.get() + floats, init == RandomInit::Ones ? 1.f : 0.f);
    }
    weight_bytes_ += floats * int64_t(sizeof(float));
    return buffer;
  }

  void loadWeights(const EngineOptions& options) {
    CheckpointReader reader(options.tensors, options.on_progress);
    const int64_t d = config_.d_model, d_ff = config_.d_ff;
    const bool bias = config_.has_bias;
    auto norm = [&](const std::string& prefix, Buffer& w, Buffer& b) {
      w = weight(options, reader, prefix + ".weight", {d}, RandomInit::Ones);
      if (bias) b = weight(options, reader, prefix + ".bias", {d}, RandomInit::Zeros);
    };
    auto linear = [&](const std::string& prefix, int64_t out, int64_t in, Buffer& w, Buffer& b) {
      w = weight(options, reader, prefix + ".weight", {out, in}, RandomInit::Normal);
      if (bias) b = weight(options, reader, prefix + ".bias", {out}, RandomInit::Zeros);
    };
    wte_ = weight(options, reader, "wte.weight", {config_.vocab_size, d}, RandomInit::Normal);
    layers_.resize(size_t(config_.n_layers));
    for (int i = 0; i < config_.n_layers; ++i) {
      LayerWeights& l = layers_[size_t(i)];
      const std::string p = "blocks." + std::to_string(i) + ".";
      norm(p + "ln_1", l.ln1_w, l.ln1_b);
      linear(p + "attn.Wqkv", 3 * d, d, l.wqkv, l.bqkv);
      if (config_.qk_ln) {
        norm(p + "attn.q_ln", l.q_ln_w, l.q_ln_b);
        norm(p + "attn.k_ln", l.k_ln_w, l.k_ln_b);
      }
      linear(p + "attn.out_proj", d, d, l.wout, l.bout);
      norm(p + "ln_2", l.ln2_w, l.ln2_b);
      linear(p + "mlp.up", d_ff, d, l.wup, l.bup);
      linear(p + "mlp.down", d, d_ff, l.wdown, l.bdown);
    }
    norm("ln_f", ln_f_w_, ln_f_b_);
  }

  void ensureWorkspace(int64_t rows) {
    const int64_t d = config_.d_model;
    auto fit = [](std::vector<float>& buffer, int64_t floats) {
      if (int64_t(buffer.size()) < floats) buffer.resize(size_t(floats));
    };
    fit(x_, rows * d);
    fit(h_, rows * d);
    fit(qkv_, rows * 3 * d);
    fit(attn_, rows * d);
    fit(tmp_, rows * d);
    fit(ff_, rows * config_.d_ff);
  }

  // The rows of a sequence in one layer's pool (offsets from cacheLayer).
  KvRows kvRows(const Row& row) const {
    const int64_t d = config_.d_model;
    return KvRows{row.blocks, 0, kKvBlockTokens * d, d};
  }
  float* cacheLayer(Buffer& cache, int layer) { return cache.data.get() + int64_t(layer) * layer_stride_; }

  // Runs the tokens `rows` (ids[i] at rows[i]) through the model, appending their keys and values to the cache.
  // Writes logits of rows [logits_from, rows.size()) to out, one vocab_size row each.
  void runPass(const std::vector<Row>& rows, const int32_t* ids, int64_t logits_from, float* out) {
    std::vector<int64_t> logitRows;
    for (int64_t r = logits_from; r < int64_t(rows.size()); ++r) logitRows.push_back(r);
    runPass(rows, ids, logitRows, out);
  }

  // The same, with the logits of the rows listed in logit_rows (ascending), in that order.
  void runPass(const std::vector<Row>& rows, const int32_t* ids, const std::vector<int64_t>& logit_rows, float* out) {
    const int64_t n = int64_t(rows.size());
    const int64_t d = config_.d_model, d_ff = config_.d_ff;
    const int head_dim = config_.d_model / config_.n_heads;
    const float eps = config_.ln_eps;
    ensureWorkspace(n);
    float *x = x_.data(), *h = h_.data(), *qkv = qkv_.data(), *attn = attn_.data(), *tmp = tmp_.data(),
          *ff = ff_.data();

    for (int64_t r = 0; r < n; ++r) std::copy_n(wte_.get() + int64_t(ids[r]) * d, d, x + r * d);

    for (int layer = 0; layer < config_.n_layers; ++layer) {
      const LayerWeights& l = layers_[size_t(layer)];
      cpu::layerNorm(x, n, d, l.ln1_w.get(), l.ln1_b.get(), eps, h, &pool_);
      cpu::linear(h, n, d, l.wqkv.get(), l.bqkv.get(), 3 * d, qkv, &pool_);
      if (config_.clip_qkv > 0.f) {
        const float clip = config_.clip_qkv;
        for (int64_t i = 0; i < n * 3 * d; ++i) qkv[i] = std::min(clip, std::max(-clip, qkv[i]));
      }
      for (int64_t r = 0; r < n; ++r) {
        float* q = qkv + r * 3 * d;
        float* k = q + d;
        const float* v = q + 2 * d;
        if (config_.qk_ln) {
          cpu::layerNormRow(q, d, l.q_ln_w.get(), l.q_ln_b.get(), eps, q);
          cpu::layerNormRow(k, d, l.k_ln_w.get(), l.k_ln_b.get(), eps, k);
        }
        const Row& row = rows[size_t(r)];
        const int64_t at = kvRows(row).offset(row.pos);
        std::copy_n(k, d, cacheLayer(k_cache_, layer) + at);
        std::copy_n(v, d, cacheLayer(v_cache_, layer) + at);
      }
      attend(layer, rows, qkv, attn, head_dim);
      cpu::linear(attn, n, d, l.wout.get(), l.bout.get(), d, tmp, &pool_);
      for (int64_t i = 0; i < n * d; ++i) x[i] += tmp[i];

      cpu::layerNorm(x, n, d, l.ln2_w.get(), l.ln2_b.get(), eps, h, &pool_);
      cpu::linear(h, n, d, l.wup.get(), l.bup.get(), d_ff, ff, &pool_);
      cpu::geluErf(ff, n * d_ff, &pool_);
      cpu::linear(ff, n, d_ff, l.wdown.get(), l.bdown.get(), d, tmp, &pool_);
      for (int64_t i = 0; i < n * d; ++i) x[i] += tmp[i];
    }

    const int64_t n_logits = int64_t(logit_rows.size());
    if (n_logits == 0) return;
    // The listed rows gathered to the front of x (ascending, so no row is overwritten before it is read).
    for (int64_t i = 0; i < n_logits; ++i) {
      if (logit_rows[size_t(i)] != i) std::copy_n(x + logit_rows[size_t(i)] * d, d, x + i * d);
    }
    cpu::layerNorm(x, n_logits, d, ln_f_w_.get(), ln_f_b_.get(), eps, h, &pool_);
    cpu::linear(h, n_logits, d, wte_.get(), nullptr, config_.vocab_size, out, &pool_);
    if (config_.logit_scale != 1.f) {
      for (int64_t i = 0; i < n_logits * config_.vocab_size; ++i) out[i] *= config_.logit_scale;
    }
  }

  // Causal attention of each row's query over its own sequence's cache (keys 0..pos), in parallel over
  // (row, head) pairs.
  void attend(int layer, const std::vector<Row>& rows, const float* qkv, float* out, int head_dim) {
    const int64_t d = config_.d_model;
    const int heads = config_.n_heads;
    const int64_t max_keys = std::max_element(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
                               return a.pos < b.pos;
                             })->pos + 1;
    const float* slopes = config_.alibi_slopes.empty() ? nullptr : config_.alibi_slopes.data();
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / (2 * max_keys * head_dim));
    pool_.parallelFor(int64_t(rows.size()) * heads, grain, [&](int64_t i0, int64_t i1) {
      std::vector<float> scores(static_cast<size_t>(max_keys));
      for (int64_t item = i0; item < i1; ++item) {
        const Row& row = rows[size_t(item / heads)];
        const int head = int(item % heads);
        const int64_t offset = int64_t(head) * head_dim;
        cpu::attendRow(qkv + (item / heads) * 3 * d + offset, cacheLayer(k_cache_, layer) + offset,
                       cacheLayer(v_cache_, layer) + offset, kvRows(row), row.pos + 1, row.pos, head_dim,
                       config_.softmax_scale, slopes ? slopes[head] : 0.f, scores.data(),
                       out + (item / heads) * d + offset);
      }
    });
  }

  const ModelConfig config_;
  const int64_t kv_blocks_;
  int64_t layer_stride_ = 0;  // floats of one layer's block pool
  ThreadPool pool_;
  SequenceSlots slots_;

  Buffer wte_, ln_f_w_, ln_f_b_;
  std::vector<LayerWeights> layers_;
  int64_t weight_bytes_ = 0;
  // [layer][block][row of the block][d_model]
  Buffer k_cache_, v_cache_;
  std::vector<float> x_, h_, qkv_, attn_, tmp_, ff_;
  // The latest decode step's logits, for lastLogits.
  std::vector<float> last_logits_;
  int last_rows_ = 0;
};

}  // namespace

std::unique_ptr<Engine> createCpuEngine(const EngineOptions& options) { return std::make_unique<CpuEngine>(options); }

}  // namespace flashmpt
