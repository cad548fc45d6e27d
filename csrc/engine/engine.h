// The engine interface shared by the CPU reference backend (csrc/engine/cpu) and the CUDA backend
// (csrc/engine/cuda). The N-API layer (csrc/binding) only talks to this interface.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace flashmpt {

enum class DType : int { F32 = 0, F16 = 1, BF16 = 2 };

// Normalized model hyper-parameters (lib/config.ts produces them from either config layout).
struct ModelConfig {
  int d_model = 0, n_heads = 0, n_layers = 0, d_ff = 0, vocab_size = 0, max_seq_len = 0;
  float ln_eps = 1e-5f;
  bool qk_ln = false;
  bool has_bias = false;      // no_bias == false: every Linear and LayerNorm has a bias
  float clip_qkv = 0.f;       // <= 0: no clipping; else qkv = clamp(qkv, -clip, clip) before the split
  float softmax_scale = 0.f;  // resolved: 1/sqrt(head_dim) when the config says null
  float logit_scale = 1.f;    // resolved: 1 when null
  std::vector<float> alibi_slopes;  // n_heads slopes, bias = slope_h * (j - i); empty: no ALiBi
};

// Where the bytes of one weight tensor live in a checkpoint file. Names are canonical (lib/checkpoint/names.ts):
//   wte.weight, ln_f.weight|bias,
//   blocks.{i}.ln_1.weight|bias, blocks.{i}.attn.Wqkv.weight|bias, blocks.{i}.attn.q_ln.weight|bias,
//   blocks.{i}.attn.k_ln.weight|bias, blocks.{i}.attn.out_proj.weight|bias, blocks.{i}.ln_2.weight|bias,
//   blocks.{i}.mlp.up.weight|bias, blocks.{i}.mlp.down.weight|bias
// Linear weights are [out, in] row-major as PyTorch stores them.
struct TensorSource {
  std::string name;
  std::string file;   // absolute path
  uint64_t offset = 0;  // byte offset of the first element in the file
  uint64_t bytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

struct EngineOptions {
  ModelConfig config;
  std::vector<TensorSource> tensors;  // ignored when random_weights
  bool random_weights = false;        // benchmark default: weights ~ N(0, 0.02) from `seed`, made on the device
  uint64_t seed = 0;
  int device = -1;                    // -1: CPU; >= 0: CUDA device ordinal
  DType compute_dtype = DType::BF16;  // CUDA: BF16 or F16; CPU always computes in F32
  int64_t kv_tokens = 0;              // context length: the most tokens one sequence holds
  int max_sequences = 1;              // sequence slots
  // The paged KV cache's pool, in blocks of kKvBlockTokens (kernels/kv/paged_kv.h) shared by all
  // sequences; 0: enough for every slot at full context (max_sequences · ⌈kv_tokens / kKvBlockTokens⌉).
  int64_t kv_blocks = 0;
  int threads = 0;                    // CPU: worker threads, 0 = all cores
  // Called from the loading thread as checkpoint bytes are read and converted (bytes done, bytes in all);
  // optional. Never called for random weights.
  std::function<void(uint64_t, uint64_t)> on_progress;
};

// decodeBatchCandidates hands back at most this many candidates per row.
constexpr int kMaxCandidates = 1024;
// forwardPrompts takes at most this many sequences per call.
constexpr int kMaxPromptSequences = 64;
// decodeGreedy runs at most this many steps per call, for at most kMaxGreedyRows sequences.
constexpr int kMaxGreedySteps = 1024;
constexpr int kMaxGreedyRows = 64;
// What decodeGreedy records for a row the sampler would refuse: its best logit is +inf, or it has no finite one.
constexpr int32_t kGreedyPickInfinite = -1;
constexpr int32_t kGreedyPickNone = -2;

// Threading: forward, decodeBatch, decodeBatchCandidates and lastLogits are called one at a time (the binding
// serializes them) on a worker thread. createSequence, releaseSequence and sequenceLength are called on the JS
// thread, possibly while one of those runs: they must be cheap and must not wait for it (both engines keep their
// sequences in a SequenceSlots). Releasing a sequence that a running call uses takes effect when that call ends.
// Sequence handles are opaque: a released handle stays invalid (E_INVALID_ARGUMENT) even after its slot is
// reused, so a call queued for it cannot reach the next sequence.
class Engine {
 public:
  virtual ~Engine() = default;
  // Reserve a sequence slot (empty KV cache); throws FlashError E_OUT_OF_MEMORY when all are taken. KV blocks are
  // taken as calls append tokens (E_OUT_OF_MEMORY when the pool is dry) and given back on release.
  virtual int createSequence() = 0;
  virtual void releaseSequence(int seq) = 0;
  virtual int64_t sequenceLength(int seq) const = 0;
  // Append n token ids to `seq` and run them (prefill or decode). Writes vocab_size logits per appended
  // position to `out` when all_logits, else only those of the last position. Throws E_CONTEXT_LENGTH
  // past kv_tokens, E_TOKEN_RANGE for ids outside [0, vocab_size).
  virtual void forward(int seq, const int32_t* ids, int64_t n, bool all_logits, float* out) = 0;
  // Prefill of several prompts at once: lengths[i] ≥ 1 ids (the ids of all prompts concatenated in order) appended
  // to each of n distinct sequences (1 ≤ n ≤ kMaxPromptSequences), their rows sharing passes of the model as far
  // as the engine's workspace allows; out receives each sequence's last-position logits (n × vocab_size). Every
  // check (ids, context, KV blocks) is made before any work: a failed call changes no sequence. Each prompt gets
  // the bits of a call of its own (the CPU engine; the CUDA engine where gemmRowInvariance holds — elsewhere it
  // runs the prompts one pass each); forward(..., false) of it agrees bitwise on the CPU engine, within the dtype's
  // precision on the CUDA engine (a chunk's GEMMs take the fastest layout for its rows).
  virtual void forwardPrompts(const int* seqs, const int32_t* ids, const int64_t* lengths, int n, float* out) = 0;
  // The same prefill handing back only what the sampler needs of each prompt's last-position row, as
  // decodeBatchCandidates does for a decode step (k best ids below sampleable_vocab with their logits, the row's
  // log-sum-exp; out_ids and out_logits n x k, out_lse n); the engine keeps the n full rows for lastLogits.
  virtual void forwardPromptsCandidates(const int* seqs, const int32_t* ids, const int64_t* lengths, int n, int k,
                                        int sampleable_vocab, int32_t* out_ids, float* out_logits, float* out_lse) = 0;
  // One decode step for `n` sequences, one new token each; out is n x vocab_size logits.
  virtual void decodeBatch(const int* seqs, const int32_t* ids, int n, float* out) = 0;
  // One decode step like decodeBatch that hands back only what the sampler needs of each row: the k best ids
  // below sampleable_vocab (logit descending, ties to the lower id) with their logits, bit-identical to the full
  // row's, into out_ids and out_logits (n x k), and the log-sum-exp over ids below sampleable_vocab into out_lse
  // (n). 1 ≤ k ≤ min(kMaxCandidates, sampleable_vocab), sampleable_vocab ≤ vocab_size. The engine keeps the
  // step's full logits for lastLogits.
  virtual void decodeBatchCandidates(const int* seqs, const int32_t* ids, int n, int k, int sampleable_vocab,
                                     int32_t* out_ids, float* out_logits, float* out_lse) = 0;
  // `steps` greedy decode steps for n ≤ kMaxGreedyRows sequences with no host round trip between them: step 0
  // feeds ids, each later step the row's previous pick — the best id below sampleable_vocab, NaN as −inf,
  // banned_id (≥ 0) excluded, ties to the lower id: the sampler's greedy rule — and out (steps × n, step-major)
  // receives the picks, or kGreedyPickInfinite / kGreedyPickNone for a row the sampler would refuse (its later
  // picks are then meaningless). Every sequence grows by `steps` tokens; 1 ≤ steps ≤ kMaxGreedySteps.
  virtual void decodeGreedy(const int* seqs, const int32_t* ids, int n, int steps, int sampleable_vocab,
                            int banned_id, int32_t* out) = 0;
  // Writes the vocab_size logits of row `row` of the latest decodeBatch, decodeBatchCandidates or
  // forwardPromptsCandidates to out. Valid until the next forward or decode call; E_INVALID_ARGUMENT when that call
  // has no such row, or a forward ran since.
  virtual void lastLogits(int row, float* out) = 0;
  // Bytes of device (or host, for CPU) memory held: weights, KV cache and workspace.
  virtual int64_t weightBytes() const = 0;
  virtual int64_t kvCacheBytes() const = 0;
  virtual int64_t workspaceBytes() const = 0;
  // Blocks of the KV pool, and those no sequence holds.
  virtual int64_t kvBlocks() const = 0;
  virtual int64_t freeKvBlocks() const = 0;
};

// options.kv_blocks, or its default.
int64_t resolvedKvBlocks(const EngineOptions& options);

// The checks every backend makes of a ModelConfig (positive shape, d_model % n_heads, one ALiBi slope per head,
// a resolved softmax scale, a positive eps); throws FlashError E_CONFIG naming the field.
void validateModelConfig(const ModelConfig& config);

std::unique_ptr<Engine> createCpuEngine(const EngineOptions& options);
// Throws FlashError E_DEVICE when the addon was built without CUDA or the device does not exist.
std::unique_ptr<Engine> createCudaEngine(const EngineOptions& options);
int cudaDeviceCount();  // 0 without CUDA or without a GPU; never throws

}  // namespace flashmpt
