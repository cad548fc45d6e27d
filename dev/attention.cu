// Attention harness (not part of the addon): checks prefill and decode attention against the fp32 CPU
// reference with FlashAttention's rule (max error of the kernel <= 2x the max error of the naive kernel in the
// same precision, both vs the reference), then times prefill (TFLOP/s, causal counted as 4*B*H*S^2*D/2) and
// decode (GB/s over the KV bytes read) beside the measured device-to-device copy bandwidth.
//   nvcc -O3 -std=c++17 -arch=sm_90 -I. dev/attention.cu kernels/attention/*.cu kernels/attention/attention_ref.cc \
//     csrc/engine/cpu/cpu_ops.cc -o /tmp/attn
//   /tmp/attn [--json] [--no-check] [--no-bench] [--small]
// Exits non-zero when a check fails.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention_params.h"
#include "kernels/attention/attention_ref.h"
#include "kernels/attention/flash_prefill_kernel.cuh"  // tile configurations compared in the benchmark
#include "kernels/attention/naive_attention.h"
#include "kernels/qkv/qkv_epilogue_ref.h"

#include "dev/dev_check.h"

using namespace flashmpt;


namespace {

bool g_json = false;
bool g_small = false;  // --small: only shapes up to 1000 keys (quick enough for compute-sanitizer)
std::string g_json_checks, g_json_bench;
int g_failures = 0;

// ---------------------------------------------------------------------------------------------- host data

uint16_t to_bits(float v, AttnDType t) {
  if (t == AttnDType::BF16) {
    __nv_bfloat16 b = __float2bfloat16_rn(v);
    return *reinterpret_cast<uint16_t*>(&b);
  }
  __half h = __float2half_rn(v);
  return *reinterpret_cast<uint16_t*>(&h);
}
float from_bits(uint16_t bits, AttnDType t) {
  if (t == AttnDType::BF16) return __bfloat162float(*reinterpret_cast<__nv_bfloat16*>(&bits));
  return __half2float(*reinterpret_cast<__half*>(&bits));
}
constexpr uint16_t kNaNBits = 0xffff;  // NaN in both bf16 and fp16: poison for unwritten or misread elements

// Normal values rounded to the dtype; the float image (what the kernels really see) feeds the reference.
std::vector<float> random_image(size_t n, AttnDType t, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(n);
  for (float& f : x) f = from_bits(to_bits(nd(rng), t), t);
  return x;
}

// MPT's ALiBi slopes (transformers' gen_slopes, alibi_bias_max 8): 2^(-8h/n) for h = 1..n, n the next power
// of two, interleaved when n_heads is not one.
std::vector<float> alibi_slopes(int n_heads) {
  int n = 1;
  while (n < n_heads) n *= 2;
  std::vector<float> s(n);
  for (int h = 0; h < n; ++h) s[h] = std::pow(2.f, -8.f * float(h + 1) / float(n));
  if (n == n_heads) return s;
  std::vector<float> out;
  for (int h = 1; h < n; h += 2) out.push_back(s[h]);
  for (int h = 0; h < n; h += 2) out.push_back(s[h]);
  out.resize(n_heads);
  return out;
}

// A [batch][seq][heads][dim] tensor on the device in one of two layouts, its sequence axis padded (pad rows
// hold NaN, so a kernel that reads past the end shows it).
struct DevTensor {
  void* ptr = nullptr;
  int batch, seq, seq_alloc, heads, dim;
  bool heads_major;  // false: BSHD, true: BHSD
  int64_t batch_stride() const { return int64_t(seq_alloc) * heads * dim; }
  int64_t row_stride() const { return heads_major ? dim : int64_t(heads) * dim; }
  int64_t head_stride() const { return heads_major ? int64_t(seq_alloc) * dim : dim; }
  size_t elems() const { return size_t(batch) * seq_alloc * heads * dim; }
  int64_t offset(int b, int s, int h) const { return b * batch_stride() + s * row_stride() + h * head_stride(); }

  DevTensor(int b, int s, int pad, int h, int d, bool hm)
      : batch(b), seq(s), seq_alloc(s + pad), heads(h), dim(d), heads_major(hm) {
    CHECK(cudaMalloc(&ptr, elems() * 2));
  }
  ~DevTensor() { cudaFree(ptr); }
  DevTensor(const DevTensor&) = delete;
  DevTensor& operator=(const DevTensor&) = delete;

  void upload(const std::vector<float>& x, AttnDType t) {  // x: [batch][seq][heads][dim]
    std::vector<uint16_t> bits(elems(), kNaNBits);
    for (int b = 0; b < batch; ++b)
      for (int s = 0; s < seq; ++s)
        for (int h = 0; h < heads; ++h)
          for (int d = 0; d < dim; ++d)
            bits[offset(b, s, h) + d] = to_bits(x[((size_t(b) * seq + s) * heads + h) * dim + d], t);
    CHECK(cudaMemcpy(ptr, bits.data(), elems() * 2, cudaMemcpyHostToDevice));
  }
  void poison() { CHECK(cudaMemset(ptr, 0xff, elems() * 2)); }
  std::vector<float> download(AttnDType t) const {
    std::vector<uint16_t> bits(elems());
    CHECK(cudaMemcpy(bits.data(), ptr, elems() * 2, cudaMemcpyDeviceToHost));
    std::vector<float> x(size_t(batch) * seq * heads * dim);
    for (int b = 0; b < batch; ++b)
      for (int s = 0; s < seq; ++s)
        for (int h = 0; h < heads; ++h)
          for (int d = 0; d < dim; ++d)
            x[((size_t(b) * seq + s) * heads + h) * dim + d] = from_bits(bits[offset(b, s, h) + d], t);
    return x;
  }
};

struct DevBuf {
  void* ptr = nullptr;
  explicit DevBuf(size_t bytes) { CHECK(cudaMalloc(&ptr, std::max<size_t>(bytes, 16))); }
  ~DevBuf() { cudaFree(ptr); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <typename U>
  U* as() const { return static_cast<U*>(ptr); }
};

// Max |x - ref|; NaN anywhere counts as infinite error.
double max_err(const std::vector<float>& x, const std::vector<float>& ref) {
  double e = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) return INFINITY;
    e = std::max(e, double(std::fabs(x[i] - ref[i])));
  }
  return e;
}

const char* dtype_name(AttnDType t) { return t == AttnDType::BF16 ? "bf16" : "f16"; }

void report_check(const char* kind, AttnDType t, int d, bool causal, bool alibi, int b, int h, int sq, int sk,
                  double flash, double naive) {
  // FlashAttention's rule; 1e-6 only keeps exact cases (both errors 0) from failing on float noise.
  const bool ok = flash <= 2 * naive + 1e-6;
  if (!ok) ++g_failures;
  if (!g_json)
    std::printf("%-7s %-4s hd%-3d causal %d alibi %d  B%-2d H%-2d Sq %-5d Sk %-5d  err %.3e  naive %.3e  %s\n",
                kind, dtype_name(t), d, causal, alibi, b, h, sq, sk, flash, naive, ok ? "ok" : "FAIL");
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "%s{\"kernel\":\"%s\",\"dtype\":\"%s\",\"head_dim\":%d,\"causal\":%d,\"alibi\":%d,\"batch\":%d,"
                "\"heads\":%d,\"seqlen_q\":%d,\"seqlen_k\":%d,\"err\":%.4e,\"naive_err\":%.4e,\"ok\":%s}",
                g_json_checks.empty() ? "" : ",", kind, dtype_name(t), d, causal, alibi, b, h, sq, sk, flash, naive,
                ok ? "true" : "false");
  g_json_checks += buf;
}

// ---------------------------------------------------------------------------------------------- checks

void check_prefill(AttnDType t, int d, bool causal, bool alibi, int B, int H, int Sq, int Sk, int variant,
                   std::mt19937& rng) {
  const std::vector<float> q = random_image(size_t(B) * Sq * H * d, t, rng);
  const std::vector<float> k = random_image(size_t(B) * Sk * H * d, t, rng);
  const std::vector<float> v = random_image(size_t(B) * Sk * H * d, t, rng);
  const std::vector<float> slopes = alibi_slopes(H);
  // Alternate layouts so both stride patterns are exercised: q/o and k/v in different ones.
  const bool hm = variant % 2;
  DevTensor dq(B, Sq, 3, H, d, hm), dk(B, Sk, 5, H, d, !hm), dv(B, Sk, 5, H, d, !hm);
  DevTensor dof(B, Sq, 0, H, d, hm), don(B, Sq, 0, H, d, hm);
  dq.upload(q, t);
  dk.upload(k, t);
  dv.upload(v, t);
  dof.poison();
  don.poison();
  DevBuf dslopes(H * sizeof(float));
  CHECK(cudaMemcpy(dslopes.ptr, slopes.data(), H * sizeof(float), cudaMemcpyHostToDevice));

  FlashAttentionParams p{};
  p.q = dq.ptr;
  p.k = dk.ptr;
  p.v = dv.ptr;
  p.o = dof.ptr;
  p.q_batch_stride = dq.batch_stride(), p.q_row_stride = dq.row_stride(), p.q_head_stride = dq.head_stride();
  p.k_batch_stride = dk.batch_stride(), p.k_row_stride = dk.row_stride(), p.k_head_stride = dk.head_stride();
  p.v_batch_stride = dv.batch_stride(), p.v_row_stride = dv.row_stride(), p.v_head_stride = dv.head_stride();
  p.o_batch_stride = dof.batch_stride(), p.o_row_stride = dof.row_stride(), p.o_head_stride = dof.head_stride();
  p.batch = B, p.n_heads = H, p.seqlen_q = Sq, p.seqlen_k = Sk, p.head_dim = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.alibi_slopes = alibi ? dslopes.as<float>() : nullptr;
  p.causal = causal;
  p.dtype = t;
  CHECK(flash_attention_prefill(p, 0));

  FlashAttentionParams pn = p;
  pn.o = don.ptr;
  DevBuf scratch(naive_attention_scratch_bytes(pn, NaiveScores::Input));
  CHECK(naive_attention(pn, NaiveScores::Input, scratch.ptr, 0));
  CHECK(cudaDeviceSynchronize());

  std::vector<float> ref(q.size());
  attention_ref(q.data(), k.data(), v.data(), ref.data(), B, Sq, Sk, H, d, p.softmax_scale,
                alibi ? slopes.data() : nullptr, causal);
  report_check("prefill", t, d, causal, alibi, B, H, Sq, Sk, max_err(dof.download(t), ref),
               max_err(don.download(t), ref));
}

// Paged KV cache [block][row][head][dim] (kernels/kv/paged_kv.h): sequence b's blocks are a random permutation of
// the pool, one block unused; rows past a sequence's length, and the unused block, hold NaN, and so does the
// workspace before the call. The naive yardstick reads each sequence from a contiguous copy.
// new_token: the engine's decode step. Each row's last key and value, and its query, come from a raw Wqkv row
// (clipped, QK-LayerNorm; reference: kernels/qkv/qkv_epilogue_ref.h) instead of the cache, whose row there holds
// NaN until the kernel writes it; an extra padding row (position −1, one key) must attend to its own new token
// and write nothing.
void check_decode(AttnDType t, int d, bool alibi, std::vector<int> lens, int max_len, std::mt19937& rng,
                  bool new_token = false) {
  const int H = 3, d_model = H * d;
  if (new_token) lens.push_back(1);  // the padding row
  const int B = int(lens.size());
  const std::vector<float> slopes = alibi_slopes(H);
  const int table_stride = (max_len + kKvBlockTokens - 1) / kKvBlockTokens, n_blocks = B * table_stride + 1;
  std::vector<int32_t> table(size_t(B) * table_stride);
  std::iota(table.begin(), table.end(), 1);
  std::shuffle(table.begin(), table.end(), rng);
  const int64_t row_stride = d_model, block_stride = int64_t(kKvBlockTokens) * row_stride;
  const size_t cache_elems = size_t(n_blocks) * block_stride, seq_elems = size_t(max_len) * row_stride;
  std::vector<uint16_t> kbits(cache_elems, kNaNBits), vbits(cache_elems, kNaNBits);
  std::vector<uint16_t> kseq(size_t(B) * seq_elems, kNaNBits), vseq(size_t(B) * seq_elems, kNaNBits);
  std::vector<std::vector<float>> kimg(B), vimg(B);  // [len][H][d] per sequence
  std::vector<float> q = random_image(size_t(B) * d_model, t, rng);

  // The new tokens: raw rows with some entries past the clip, LayerNorm weights near 1.
  const float clip = 3.f, eps = 1e-5f;
  std::vector<float> qkv, ln(4 * size_t(d_model)), k_new(size_t(B) * d_model), v_new(size_t(B) * d_model);
  std::vector<int> positions(B);
  if (new_token) {
    qkv = random_image(size_t(B) * 3 * d_model, t, rng);
    for (float& x : qkv) x = from_bits(to_bits(2.f * x + 0.5f, t), t);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    for (size_t i = 0; i < ln.size(); ++i) ln[i] = (i / d_model) % 2 == 0 ? 1.f + u(rng) : 0.2f * u(rng);
    ref::qkvEpilogue(qkv.data(), B, d_model, clip, ln.data(), ln.data() + d_model, ln.data() + 2 * d_model,
                     ln.data() + 3 * d_model, eps, q.data(), k_new.data(), v_new.data());
    for (float* x : {q.data(), k_new.data(), v_new.data()})
      for (size_t i = 0; i < size_t(B) * d_model; ++i) x[i] = from_bits(to_bits(x[i], t), t);  // stored as T
    for (int b = 0; b < B; ++b) positions[b] = b == B - 1 ? -1 : lens[b] - 1;
  }
  for (int b = 0; b < B; ++b) {
    kimg[b] = random_image(size_t(lens[b]) * d_model, t, rng);
    vimg[b] = random_image(size_t(lens[b]) * d_model, t, rng);
    const KvRows rows{table.data() + size_t(b) * table_stride, 0, block_stride, row_stride};
    for (size_t i = 0; i < kimg[b].size(); ++i) {
      const int64_t pos = int64_t(i) / row_stride, at = rows.offset(pos) + int64_t(i) % row_stride;
      if (new_token && pos == lens[b] - 1) {  // the kernel brings this row itself
        kimg[b][i] = k_new[size_t(b) * d_model + i % row_stride];
        vimg[b][i] = v_new[size_t(b) * d_model + i % row_stride];
      } else {
        kbits[at] = to_bits(kimg[b][i], t);
        vbits[at] = to_bits(vimg[b][i], t);
      }
      kseq[b * seq_elems + i] = to_bits(kimg[b][i], t);
      vseq[b * seq_elems + i] = to_bits(vimg[b][i], t);
    }
  }
  std::vector<uint16_t> qbits(q.size()), qkvbits(qkv.size());
  for (size_t i = 0; i < q.size(); ++i) qbits[i] = to_bits(q[i], t);
  for (size_t i = 0; i < qkv.size(); ++i) qkvbits[i] = to_bits(qkv[i], t);

  DevBuf dk(cache_elems * 2), dv(cache_elems * 2), dq(q.size() * 2), dof(q.size() * 2), don(q.size() * 2);
  DevBuf dkseq(kseq.size() * 2), dvseq(vseq.size() * 2), dqkv(std::max<size_t>(qkv.size(), 1) * 2);
  DevBuf dtable(table.size() * sizeof(int32_t)), dlen(B * sizeof(int)), dpos(B * sizeof(int)), dslopes(H * sizeof(float));
  DevBuf dln(ln.size() * sizeof(float)), dcounters(size_t(B) * H * sizeof(unsigned));
  const size_t ws_floats = decode_attention_workspace_floats(B, H, d, max_len);
  DevBuf dws(ws_floats * sizeof(float));
  CHECK(cudaMemcpy(dk.ptr, kbits.data(), cache_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dv.ptr, vbits.data(), cache_elems * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dq.ptr, qbits.data(), q.size() * 2, cudaMemcpyHostToDevice));
  if (new_token) CHECK(cudaMemcpy(dqkv.ptr, qkvbits.data(), qkv.size() * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dkseq.ptr, kseq.data(), kseq.size() * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dvseq.ptr, vseq.data(), vseq.size() * 2, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dtable.ptr, table.data(), table.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dlen.ptr, lens.data(), B * sizeof(int), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dpos.ptr, positions.data(), B * sizeof(int), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dln.ptr, ln.data(), ln.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(dslopes.ptr, slopes.data(), H * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemset(dof.ptr, 0xff, q.size() * 2));
  CHECK(cudaMemset(don.ptr, 0xff, q.size() * 2));
  CHECK(cudaMemset(dws.ptr, 0xff, ws_floats * sizeof(float)));
  CHECK(cudaMemset(dcounters.ptr, 0, size_t(B) * H * sizeof(unsigned)));

  DecodeAttentionParams p{};
  p.q = new_token ? nullptr : dq.ptr, p.o = dof.ptr, p.k_cache = dk.ptr, p.v_cache = dv.ptr;
  p.seq_len = dlen.as<int>();
  p.kv.block_table = dtable.as<int32_t>(), p.kv.table_stride = table_stride;
  p.kv.block_stride = block_stride, p.kv.row_stride = row_stride, p.head_stride = d;
  p.batch = B, p.n_heads = H, p.head_dim = d, p.max_seq_len = max_len;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.alibi_slopes = alibi ? dslopes.as<float>() : nullptr;
  p.workspace = dws.as<float>();
  p.split_counters = dcounters.as<unsigned>();
  if (new_token) {
    p.new_token.qkv = dqkv.ptr;
    p.new_token.positions = dpos.as<int>();
    const float* w = dln.as<float>();
    p.new_token.q_ln_weight = w, p.new_token.q_ln_bias = w + d_model;
    p.new_token.k_ln_weight = w + 2 * d_model, p.new_token.k_ln_bias = w + 3 * d_model;
    p.new_token.clip = clip, p.new_token.eps = eps;
  }
  p.dtype = t;
  CHECK(decode_attention(p, 0));

  // The naive kernel, one sequence at a time: a single query at the end of its keys.
  const int maxlen_seen = *std::max_element(lens.begin(), lens.end());
  DevBuf scratch(size_t(H) * maxlen_seen * 2);
  std::vector<float> ref(q.size());
  for (int b = 0; b < B; ++b) {
    FlashAttentionParams pn{};
    pn.q = dq.as<uint16_t>() + size_t(b) * d_model;
    pn.k = dkseq.as<uint16_t>() + b * seq_elems;
    pn.v = dvseq.as<uint16_t>() + b * seq_elems;
    pn.o = don.as<uint16_t>() + size_t(b) * d_model;
    pn.q_row_stride = pn.o_row_stride = d_model;
    pn.q_head_stride = pn.o_head_stride = pn.k_head_stride = pn.v_head_stride = d;
    pn.k_row_stride = pn.v_row_stride = row_stride;
    pn.batch = 1, pn.n_heads = H, pn.seqlen_q = 1, pn.seqlen_k = lens[b], pn.head_dim = d;
    pn.softmax_scale = p.softmax_scale;
    pn.alibi_slopes = p.alibi_slopes;
    pn.causal = true;
    pn.dtype = t;
    CHECK(naive_attention(pn, NaiveScores::Input, scratch.ptr, 0));
    CHECK(cudaDeviceSynchronize());
    attention_ref(q.data() + size_t(b) * d_model, kimg[b].data(), vimg[b].data(), ref.data() + size_t(b) * d_model, 1, 1,
                  lens[b], H, d, p.softmax_scale, alibi ? slopes.data() : nullptr, true);
  }
  CHECK(cudaDeviceSynchronize());
  auto download = [&](const DevBuf& buf, size_t n) {
    std::vector<uint16_t> bits(n);
    CHECK(cudaMemcpy(bits.data(), buf.ptr, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> x(n);
    for (size_t i = 0; i < x.size(); ++i) x[i] = from_bits(bits[i], t);
    return x;
  };
  report_check(new_token ? "decode+new" : "decode", t, d, true, alibi, B, H, 1, maxlen_seen,
               max_err(download(dof, q.size()), ref), max_err(download(don, q.size()), ref));
  if (!new_token) return;
  // The new rows in the cache: the reference's values up to one rounding step (fp32 statistics summed in another
  // order), and nothing else written (the padding row's table points at blocks no one else owns).
  const std::vector<float> kc = download(dk, cache_elems), vc = download(dv, cache_elems);
  const float ulp = t == AttnDType::BF16 ? 1.f / 128 : 1.f / 1024;
  int wrong = 0, written = 0;
  for (int b = 0; b < B; ++b) {
    const KvRows rows{table.data() + size_t(b) * table_stride, 0, block_stride, row_stride};
    for (int pos = 0; pos < max_len; ++pos) {
      for (int c = 0; c < d_model; ++c) {
        const int64_t at = rows.offset(pos) + c;
        const bool fresh = pos == lens[b] - 1 && positions[b] >= 0;
        if (!fresh) {
          wrong += kbits[at] == kNaNBits ? !std::isnan(kc[at]) || !std::isnan(vc[at]) : kc[at] != kimg[b][size_t(pos) * d_model + c];
          continue;
        }
        ++written;
        const float kr = k_new[size_t(b) * d_model + c], vr = v_new[size_t(b) * d_model + c];
        wrong += !(std::fabs(kc[at] - kr) <= ulp * std::fabs(kr) + 1e-6f) || vc[at] != vr;
      }
    }
  }
  const bool ok = wrong == 0 && written == (B - 1) * d_model;
  if (!ok) ++g_failures;
  if (!g_json)
    std::printf("decode+new cache %-4s hd%-3d B%-2d: %d new-token elements written, %d wrong or stray  %s\n", dtype_name(t), d, B,
                written, wrong, ok ? "ok" : "FAIL");
}

// Parameters must be refused, not misread.
void check_validation() {
  FlashAttentionParams p{};
  alignas(16) static uint16_t buf[64];
  p.q = p.k = p.v = buf;
  p.o = buf;
  p.batch = p.n_heads = p.seqlen_q = p.seqlen_k = 1;
  p.head_dim = 96;
  p.dtype = AttnDType::BF16;
  const bool bad_dim = flash_attention_prefill(p, 0) == cudaErrorInvalidValue;
  p.head_dim = 64;
  p.q_row_stride = 4;
  const bool bad_stride = flash_attention_prefill(p, 0) == cudaErrorInvalidValue;
  p.q_row_stride = 0;
  p.q = buf + 1;
  const bool bad_align = flash_attention_prefill(p, 0) == cudaErrorInvalidValue;
  const bool ok = bad_dim && bad_stride && bad_align;
  if (!ok) ++g_failures;
  if (!g_json) std::printf("params  refuses head_dim 96 / stride 4 / misaligned q: %s\n", ok ? "ok" : "FAIL");
}

// Packed prompts (FlashAttentionParams::seg_row0 / seg_len): ragged prompts end to end in one [rows][H][d] buffer,
// one launch, against one launch per prompt over the same memory — bit for bit, as the engine's prompts passes
// promise each prompt its solo bits.
void check_packed(AttnDType t, int d, bool alibi, const std::vector<int>& lens, std::mt19937& rng) {
  const int H = 3, P = int(lens.size());
  std::vector<int> row0(P);
  int rows = 0, longest = 0;
  for (int i = 0; i < P; ++i) row0[i] = rows, rows += lens[i], longest = std::max(longest, lens[i]);
  const size_t elems = size_t(rows) * H * d;
  auto upload = [&](const std::vector<float>& x) {
    std::vector<uint16_t> bits(x.size());
    for (size_t i = 0; i < x.size(); ++i) bits[i] = to_bits(x[i], t);
    auto buf = std::make_unique<DevBuf>(elems * 2);
    CHECK(cudaMemcpy(buf->ptr, bits.data(), elems * 2, cudaMemcpyHostToDevice));
    return buf;
  };
  const auto dq = upload(random_image(elems, t, rng)), dk = upload(random_image(elems, t, rng)),
             dv = upload(random_image(elems, t, rng));
  DevBuf packed(elems * 2), solo(elems * 2), dseg(2 * P * sizeof(int)), dslopes(H * sizeof(float));
  CHECK(cudaMemset(packed.ptr, 0xff, elems * 2));
  CHECK(cudaMemset(solo.ptr, 0xff, elems * 2));
  std::vector<int> seg(row0);
  seg.insert(seg.end(), lens.begin(), lens.end());
  CHECK(cudaMemcpy(dseg.ptr, seg.data(), seg.size() * sizeof(int), cudaMemcpyHostToDevice));
  const std::vector<float> slopes = alibi_slopes(H);
  CHECK(cudaMemcpy(dslopes.ptr, slopes.data(), H * sizeof(float), cudaMemcpyHostToDevice));
  FlashAttentionParams p{};
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = int64_t(H) * d;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = d;
  p.n_heads = H, p.head_dim = d, p.causal = true, p.dtype = t;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.alibi_slopes = alibi ? dslopes.as<float>() : nullptr;
  FlashAttentionParams pp = p;
  pp.q = dq->ptr, pp.k = dk->ptr, pp.v = dv->ptr, pp.o = packed.ptr;
  pp.batch = P, pp.seqlen_q = pp.seqlen_k = longest;
  pp.seg_row0 = dseg.as<int>(), pp.seg_len = dseg.as<int>() + P;
  CHECK(flash_attention_prefill(pp, 0));
  for (int i = 0; i < P; ++i) {
    FlashAttentionParams ps = p;
    const size_t at = size_t(row0[i]) * H * d * 2;
    ps.q = dq->as<char>() + at, ps.k = dk->as<char>() + at, ps.v = dv->as<char>() + at, ps.o = solo.as<char>() + at;
    ps.batch = 1, ps.seqlen_q = ps.seqlen_k = lens[i];
    CHECK(flash_attention_prefill(ps, 0));
  }
  std::vector<uint16_t> a(elems), b(elems);
  CHECK(cudaMemcpy(a.data(), packed.ptr, elems * 2, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(b.data(), solo.ptr, elems * 2, cudaMemcpyDeviceToHost));
  size_t differ = 0, unwritten = 0;  // unwritten: still the 0xffff (NaN) poison
  for (size_t i = 0; i < elems; ++i) differ += a[i] != b[i], unwritten += a[i] == 0xffff;
  const bool ok = differ == 0 && unwritten == 0;
  if (!ok) ++g_failures;
  if (!g_json)
    std::printf("packed  %-4s hd%-3d alibi %d  %d prompts, %d rows: %zu of %zu outputs differ from one launch each  %s\n",
                dtype_name(t), d, alibi, P, rows, differ, elems, ok ? "ok" : "FAIL");
}

void run_checks() {
  std::mt19937 rng(1234);
  struct Shape { int B, H, Sq, Sk; };
  // Short, ragged, long (past MPT's 2048: ALiBi extrapolates), an appended chunk (Sq < Sk), a single query
  // over a long prefix, and more queries than keys (causal rows with no key give 0). Up to 1024 queries run the
  // short-tile configuration, more the long one: both see ragged and exact shapes.
  const Shape shapes[] = {{2, 3, 1, 1},       {2, 3, 7, 7},      {2, 2, 128, 128}, {1, 2, 1000, 1000},
                          {1, 2, 2048, 2048}, {1, 1, 4096, 4096}, {2, 2, 7, 1000},  {1, 2, 200, 2100},
                          {2, 2, 1, 2048},    {1, 2, 300, 100},   {1, 2, 1500, 1537}, {1, 1, 1200, 1100}};
  int variant = 0;
  for (AttnDType t : {AttnDType::BF16, AttnDType::F16})
    for (int d : {128, 64})
      for (int causal = 0; causal < 2; ++causal)
        for (int alibi = 0; alibi < 2; ++alibi)
          for (const Shape& s : shapes)
            if (!g_small || s.Sk <= 1000) check_prefill(t, d, causal, alibi, s.B, s.H, s.Sq, s.Sk, variant++, rng);
  for (AttnDType t : {AttnDType::BF16, AttnDType::F16})
    for (int d : {128, 64})
      for (int alibi = 0; alibi < 2; ++alibi) {
        check_decode(t, d, alibi, {1, 7, 128, 1000}, 1100, rng);
        check_decode(t, d, alibi, {1, 2, 129, 1000}, 1100, rng, true);
        if (!g_small) check_decode(t, d, alibi, {4096, 2049, 16384}, 16400, rng);
      }
  // Many short sequences: more (batch, head) pairs than CTAs fit on the GPU, so one split each.
  std::vector<int> many(300);
  for (size_t i = 0; i < many.size(); ++i) many[i] = 1 + int(i * 37 % 257);
  check_decode(AttnDType::BF16, 128, true, many, 300, rng);
  // Fewer CTAs than splits per (batch, head), more than one: each CTA walks several splits, then takes a ticket.
  std::vector<int> mixed(40);
  for (size_t i = 0; i < mixed.size(); ++i) mixed[i] = 1 + int(i * 97 % 1100);
  check_decode(AttnDType::BF16, 128, true, mixed, 1100, rng);
  check_decode(AttnDType::BF16, 128, true, mixed, 1100, rng, true);
  for (AttnDType t : {AttnDType::BF16, AttnDType::F16})
    for (int d : {128, 64})
      for (int alibi = 0; alibi < 2; ++alibi) check_packed(t, d, alibi, {1, 7, 64, 65, 128, 300, 1024, 2}, rng);
  check_validation();
}

// ---------------------------------------------------------------------------------------------- timing

// Median of `reps` timings of fn (ms), after warm-up.
double time_ms(const std::function<void()>& fn, int reps, int inner = 1) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn();
  CHECK(cudaDeviceSynchronize());
  std::vector<float> ts;
  for (int r = 0; r < reps; ++r) {
    CHECK(cudaEventRecord(a));
    for (int i = 0; i < inner; ++i) fn();
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    ts.push_back(ms / inner);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

void bench_json(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_json(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (!g_json_bench.empty()) g_json_bench += ",";
  g_json_bench += buf;
}

// Random device data without a host round trip.
__global__ void fill_random(uint16_t* x, size_t n, uint32_t seed, bool bf16) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    const float f = (float(h & 0xffffff) / float(0x1000000)) * 4.f - 2.f;  // uniform [-2, 2)
    if (bf16) {
      __nv_bfloat16 v = __float2bfloat16_rn(f);
      x[i] = *reinterpret_cast<uint16_t*>(&v);
    } else {
      __half v = __float2half_rn(f);
      x[i] = *reinterpret_cast<uint16_t*>(&v);
    }
  }
}
void fill(void* p, size_t n, uint32_t seed) {
  fill_random<<<1024, 256>>>(static_cast<uint16_t*>(p), n, seed, true);
  CHECK(cudaGetLastError());
}

double copy_bandwidth_gbs() {
  const size_t bytes = size_t(1) << 30;
  DevBuf a(bytes), b(bytes);
  CHECK(cudaMemset(a.ptr, 1, bytes));
  const double ms = time_ms([&] { CHECK(cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice)); }, 10);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;  // bytes read + bytes written
}

template <typename Tr>
void launch_cfg(const FlashAttentionParams& p) {  // one tile configuration, launched as the library launches its own
  CHECK(attn::launch_flash_prefill<Tr>(p, nullptr));
}

void run_bench() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy_gbs = copy_bandwidth_gbs();
  if (!g_json) std::printf("\n%s, %d SMs; device-to-device copy %.0f GB/s (read + write)\n", prop.name,
                           prop.multiProcessorCount, copy_gbs);
  bench_json("{\"what\":\"device\",\"name\":\"%s\",\"sms\":%d,\"copy_gbs\":%.1f}", prop.name,
             prop.multiProcessorCount, copy_gbs);

  // Prefill: 16k tokens, 16 heads x 128, bf16, layout [B][S][H][D].
  const int H = 16, D = 128, tokens = 16384;
  const std::vector<float> slopes = alibi_slopes(H);
  DevBuf dslopes(H * sizeof(float));
  CHECK(cudaMemcpy(dslopes.ptr, slopes.data(), H * sizeof(float), cudaMemcpyHostToDevice));
  const size_t n = size_t(tokens) * H * D;
  DevBuf q(n * 2), k(n * 2), v(n * 2), o(n * 2);
  fill(q.ptr, n, 1), fill(k.ptr, n, 2), fill(v.ptr, n, 3);
  using Bf = __nv_bfloat16;
  struct Cfg { const char* name; void (*launch)(const FlashAttentionParams&); };
  const Cfg cfgs[] = {
      // name: BlockM x BlockN, then K/V stages (s1: FlashAttention-2 overlap, s2: double buffer) / CTAs per SM
      {"128x32s2", launch_cfg<attn::PrefillTraits<Bf, 128, 128, 32, 4, 2, 2>>},
      {"128x32s1", launch_cfg<attn::PrefillTraits<Bf, 128, 128, 32, 4, 2, 1>>},
      {"128x64s2", launch_cfg<attn::PrefillTraits<Bf, 128, 128, 64, 4, 2, 2>>},
      {"64x64s1/3", launch_cfg<attn::PrefillTraits<Bf, 128, 64, 64, 4, 3, 1>>},
      {"64x64s2/2", launch_cfg<attn::PrefillTraits<Bf, 128, 64, 64, 4, 2, 2>>},
      {"64x32s2/3", launch_cfg<attn::PrefillTraits<Bf, 128, 64, 32, 4, 3, 2>>},
  };
  if (!g_json) {
    std::printf("\nprefill bf16, %d tokens, %d heads x %d, TFLOP/s (causal: 4*B*H*S^2*D/2)\n", tokens, H, D);
    std::printf("%-6s %-4s %14s %14s", "S", "B", "causal+alibi", "causal");
    for (const Cfg& c : cfgs) std::printf(" %9s", c.name);
    std::printf("\n");
  }
  // (S, B): the whole token budget at three lengths, and one 2048-token prompt alone (the engine's prefill: 16 × 16
  // tiles of 128 rows fill one wave, where the causal triangle leaves the SMs with the first tiles idle early).
  for (const auto [S, B] : {std::pair{512, tokens / 512}, {2048, tokens / 2048}, {2048, 1}, {8192, tokens / 8192}}) {
    FlashAttentionParams p{};
    p.q = q.ptr, p.k = k.ptr, p.v = v.ptr, p.o = o.ptr;
    p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = p.o_batch_stride = int64_t(S) * H * D;
    p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = int64_t(H) * D;
    p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = D;
    p.batch = B, p.n_heads = H, p.seqlen_q = p.seqlen_k = S, p.head_dim = D;
    p.softmax_scale = 1.f / std::sqrt(float(D));
    p.causal = true;
    p.dtype = AttnDType::BF16;
    const double flops = 4.0 * B * H * double(S) * S * D / 2;
    auto tflops = [&](double ms) { return flops / (ms * 1e-3) / 1e12; };
    p.alibi_slopes = dslopes.as<float>();
    const double t_alibi = time_ms([&] { CHECK(flash_attention_prefill(p, 0)); }, 20);
    FlashAttentionParams pc = p;
    pc.alibi_slopes = nullptr;
    const double t_plain = time_ms([&] { CHECK(flash_attention_prefill(pc, 0)); }, 20);
    if (!g_json) std::printf("%-6d %-4d %8.1f %5.2fms %8.1f %5.2fms", S, B, tflops(t_alibi), t_alibi, tflops(t_plain), t_plain);
    bench_json("{\"what\":\"prefill\",\"S\":%d,\"B\":%d,\"alibi\":true,\"ms\":%.4f,\"tflops\":%.1f}", S, B, t_alibi,
               tflops(t_alibi));
    bench_json("{\"what\":\"prefill\",\"S\":%d,\"B\":%d,\"alibi\":false,\"ms\":%.4f,\"tflops\":%.1f}", S, B, t_plain,
               tflops(t_plain));
    for (const Cfg& c : cfgs) {
      const double t = time_ms([&] { c.launch(p); }, 20);
      if (!g_json) std::printf(" %9.1f", tflops(t));
      bench_json("{\"what\":\"prefill_cfg\",\"cfg\":\"%s\",\"S\":%d,\"ms\":%.4f,\"tflops\":%.1f}", c.name, S, t,
                 tflops(t));
    }
    if (!g_json) std::printf("\n");
  }

  // Decode: bf16, 16 heads x 128, ALiBi. Several copies of the cache rotate so the bytes come from HBM, not L2.
  if (!g_json)
    std::printf("\ndecode bf16, %d heads x %d, ALiBi: GB/s over the KV bytes read (2*B*L*H*D*2)\n%-6s %-6s %10s %10s %8s\n",
                H, D, "B", "L", "us", "GB/s", "of copy");
  // max_len: the engine's context limit, which fixes the splits; {64, 192, 2304} is a serving step's attention.
  // new_token: the engine's decode step (q, the new key and value from raw Wqkv rows, QK-LayerNorm), at a 64-row
  // engine's first steps after prompts of 128.
  struct DecodeShape { int B, L, max_len; bool new_token; };
  for (const DecodeShape& s : {DecodeShape{1, 8192, 8192, false}, DecodeShape{1, 16384, 16384, false},
                               DecodeShape{16, 2048, 2048, false}, DecodeShape{64, 192, 2304, false},
                               DecodeShape{64, 130, 2304, true}}) {
    const double kv_bytes = 2.0 * s.B * s.L * H * D * 2;
    const int copies = std::max(2, int(std::ceil(512e6 / kv_bytes)));
    // The engine's paged layout; copy c's sequences own blocks c·B·blocks_per_seq onwards, in order.
    const int blocks_per_seq = (s.max_len + kKvBlockTokens - 1) / kKvBlockTokens, n_blocks = s.B * copies * blocks_per_seq;
    const int64_t row_stride = int64_t(H) * D, block_stride = int64_t(kKvBlockTokens) * row_stride;
    const size_t cache = size_t(n_blocks) * block_stride;
    DevBuf kc(cache * 2), vc(cache * 2), dq(size_t(s.B) * H * D * 2), dout(size_t(s.B) * H * D * 2);
    fill(kc.ptr, cache, 4), fill(vc.ptr, cache, 5), fill(dq.ptr, size_t(s.B) * H * D, 6);
    std::vector<int32_t> table(n_blocks);
    std::vector<int> lens(s.B, s.L);
    std::iota(table.begin(), table.end(), 0);
    DevBuf dtable(n_blocks * sizeof(int32_t)), dlens(s.B * sizeof(int));
    CHECK(cudaMemcpy(dtable.ptr, table.data(), n_blocks * sizeof(int32_t), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(dlens.ptr, lens.data(), s.B * sizeof(int), cudaMemcpyHostToDevice));
    DevBuf ws(decode_attention_workspace_floats(s.B, H, D, s.max_len) * sizeof(float)), counters(size_t(s.B) * H * 4);
    CHECK(cudaMemset(counters.ptr, 0, size_t(s.B) * H * 4));
    DecodeAttentionParams p{};
    p.q = dq.ptr, p.o = dout.ptr, p.k_cache = kc.ptr, p.v_cache = vc.ptr;
    p.seq_len = dlens.as<int>();
    p.kv.table_stride = blocks_per_seq, p.kv.block_stride = block_stride, p.kv.row_stride = row_stride;
    p.head_stride = D;
    p.batch = s.B, p.n_heads = H, p.head_dim = D, p.max_seq_len = s.max_len;
    p.softmax_scale = 1.f / std::sqrt(float(D));
    p.alibi_slopes = dslopes.as<float>();
    p.workspace = ws.as<float>();
    p.split_counters = counters.as<unsigned>();
    p.dtype = AttnDType::BF16;
    const int d_model = H * D;
    DevBuf dqkv(size_t(s.B) * 3 * d_model * 2), dln(4 * size_t(d_model) * sizeof(float)), dpos(s.B * sizeof(int));
    if (s.new_token) {
      fill(dqkv.ptr, size_t(s.B) * 3 * d_model, 7);
      const std::vector<float> ln(4 * size_t(d_model), 1.f);
      const std::vector<int> positions(s.B, s.L - 1);
      CHECK(cudaMemcpy(dln.ptr, ln.data(), ln.size() * sizeof(float), cudaMemcpyHostToDevice));
      CHECK(cudaMemcpy(dpos.ptr, positions.data(), s.B * sizeof(int), cudaMemcpyHostToDevice));
      const float* w = dln.as<float>();
      p.q = nullptr;
      p.new_token.qkv = dqkv.ptr, p.new_token.positions = dpos.as<int>();
      p.new_token.q_ln_weight = w, p.new_token.q_ln_bias = w + d_model;
      p.new_token.k_ln_weight = w + 2 * d_model, p.new_token.k_ln_bias = w + 3 * d_model;
      p.new_token.clip = 8.f;
    }
    int it = 0;
    const double ms = time_ms(
        [&] {
          p.kv.block_table = dtable.as<int32_t>() + (it++ % copies) * s.B * blocks_per_seq;
          CHECK(decode_attention(p, 0));
        },
        15, 20);
    const double gbs = kv_bytes / (ms * 1e-3) / 1e9;
    if (!g_json)
      std::printf("%-6d %-6d %10.1f %10.0f %7.0f%%%s\n", s.B, s.L, ms * 1e3, gbs, 100 * gbs / copy_gbs,
                  s.new_token ? "  (new token)" : "");
    bench_json("{\"what\":\"decode\",\"B\":%d,\"L\":%d,\"new_token\":%s,\"us\":%.2f,\"gbs\":%.1f,\"of_copy\":%.3f}", s.B,
               s.L, s.new_token ? "true" : "false", ms * 1e3, gbs, gbs / copy_gbs);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool checks = true, bench = true;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) g_json = true;
    else if (!std::strcmp(argv[i], "--no-check")) checks = false;
    else if (!std::strcmp(argv[i], "--no-bench")) bench = false;
    else if (!std::strcmp(argv[i], "--small")) g_small = true;
    else {
      std::printf("usage: %s [--json] [--no-check] [--no-bench] [--small]\n", argv[0]);
      return 2;
    }
  }
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::printf("no CUDA device\n");
    return 2;
  }
  if (checks) run_checks();
  if (bench) run_bench();
  if (g_json)
    std::printf("{\"failures\":%d,\"checks\":[%s],\"bench\":[%s]}\n", g_failures, g_json_checks.c_str(),
                g_json_bench.c_str());
  else if (checks)
    std::printf("\n%s: %d check(s) failed\n", g_failures ? "FAIL" : "PASS", g_failures);
  return g_failures ? 1 : 0;
}
