// exports.kernels: the CUDA kernels as functions on Tensors, each with the same function on CPU tensors
// computed by its fp32 reference (the result rounded to the output dtype), so tests compare a CUDA call with
// the same call on the CPU. Calls are synchronous: a CUDA tensor result is complete when the call returns.
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "csrc/binding/addon_tensor.h"
#include "csrc/binding/napi_util.h"
#include "csrc/engine/cpu/cpu_ops.h"
#include "csrc/runtime/errors.h"
#include "kernels/gemm/gemm_ref.h"
#include "kernels/norm/layernorm_ref.h"
#include "kernels/qkv/qkv_epilogue_ref.h"
#include "kernels/sampling/topk_ref.h"

#if FLASH_MPT_WITH_CUDA
#include <cuda_runtime.h>

#include "csrc/runtime/cuda_check.h"
#include "csrc/runtime/device_buffer.h"
#include "kernels/attention/attention_params.h"
#include "kernels/attention/naive_attention.h"
#include "kernels/gemm/gemm.h"
#include "kernels/norm/layernorm.h"
#include "kernels/qkv/qkv_epilogue.h"
#include "kernels/sampling/topk.h"
#endif

namespace flashmpt {
namespace {

using binding::rethrowAsJs;
using Storage = std::shared_ptr<TensorStorage>;

// ---- argument helpers --------------------------------------------------------------------------------------

Napi::Object optionsAt(const Napi::CallbackInfo& info, size_t i) {
  if (i < info.Length() && info[i].IsObject()) return info[i].As<Napi::Object>();
  if (i < info.Length() && !info[i].IsUndefined()) fail("E_INVALID_ARGUMENT", "options must be an object");
  return Napi::Object::New(info.Env());
}

bool has(const Napi::Object& o, const char* key) {
  if (!o.Has(key)) return false;
  const Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

double numberOr(const Napi::Object& o, const char* key, double fallback) {
  if (!has(o, key)) return fallback;
  if (!o.Get(key).IsNumber()) fail("E_INVALID_ARGUMENT", std::string(key) + " must be a number");
  return o.Get(key).As<Napi::Number>().DoubleValue();
}

bool boolOr(const Napi::Object& o, const char* key, bool fallback) {
  if (!has(o, key)) return fallback;
  if (!o.Get(key).IsBoolean()) fail("E_INVALID_ARGUMENT", std::string(key) + " must be a boolean");
  return o.Get(key).As<Napi::Boolean>().Value();
}

// number[] or a typed array, as doubles.
std::vector<double> numbers(const Napi::Value& value, const char* what) {
  std::vector<double> out;
  if (value.IsTypedArray()) {
    const Napi::TypedArray t = value.As<Napi::TypedArray>();
    const Napi::Object o = value.As<Napi::Object>();
    for (size_t i = 0; i < t.ElementLength(); ++i) out.push_back(o.Get(uint32_t(i)).As<Napi::Number>().DoubleValue());
    return out;
  }
  if (!value.IsArray()) fail("E_INVALID_ARGUMENT", std::string(what) + " must be an array of numbers");
  const Napi::Array a = value.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    if (!a.Get(i).IsNumber()) fail("E_INVALID_ARGUMENT", std::string(what) + " must be an array of numbers");
    out.push_back(a.Get(i).As<Napi::Number>().DoubleValue());
  }
  return out;
}

std::vector<float> floatList(const Napi::Value& value, const char* what) {
  const std::vector<double> d = numbers(value, what);
  return std::vector<float>(d.begin(), d.end());
}

std::vector<int32_t> intList(const Napi::Value& value, const char* what) {
  std::vector<int32_t> out;
  for (double d : numbers(value, what)) {
    if (d != std::floor(d) || d < -2147483648.0 || d > 2147483647.0) {
      fail("E_INVALID_ARGUMENT", std::string(what) + " must hold 32-bit integers");
    }
    out.push_back(int32_t(d));
  }
  return out;
}

Storage tensorArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (i >= info.Length()) fail("E_INVALID_ARGUMENT", std::string(what) + " is missing");
  return AddonTensor::unwrap(info[i], what);
}

Storage tensorOption(const Napi::Object& o, const char* key) {
  return has(o, key) ? AddonTensor::unwrap(o.Get(key), key) : nullptr;
}

std::string shapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void expectShape(const Storage& t, const std::vector<int64_t>& shape, const char* what) {
  if (t->shape() != shape) {
    fail("E_INVALID_ARGUMENT", std::string(what) + " has shape " + shapeText(t->shape()) + ", expected " + shapeText(shape));
  }
}

void expectRank(const Storage& t, size_t rank, const char* what) {
  if (t->shape().size() != rank) {
    fail("E_INVALID_ARGUMENT", std::string(what) + " must have " + std::to_string(rank) + " dimensions, has shape " +
                                   shapeText(t->shape()));
  }
}

void expectDType(const Storage& t, DType dtype, const char* what) {
  if (t->dtype() != dtype) {
    fail("E_INVALID_ARGUMENT", std::string(what) + " must be " + dtypeLabel(dtype) + ", is " + dtypeLabel(t->dtype()));
  }
}

void expectSameDevice(const Storage& a, const Storage& b, const char* what) {
  if (b && a->cuda() != b->cuda()) fail("E_INVALID_ARGUMENT", std::string(what) + " is on another device");
}

int64_t dim(const Storage& t, size_t i) { return t->shape()[i]; }

#if FLASH_MPT_WITH_CUDA
// Kernels run on the legacy default stream; waiting here reports a failing launch at its call.
void finish(cudaError_t launched) {
  CUDA_CHECK(launched);
  CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

template <class T>
DeviceBuffer upload(const std::vector<T>& values) {
  DeviceBuffer buffer(values.size() * sizeof(T));
  if (!values.empty()) CUDA_CHECK(cudaMemcpy(buffer.get(), values.data(), buffer.bytes(), cudaMemcpyHostToDevice));
  return buffer;
}

AttnDType attnDType(const Storage& t) {
  if (t->dtype() == DType::F32) fail("E_INVALID_ARGUMENT", "CUDA attention takes bf16 or f16 tensors");
  return t->dtype() == DType::F16 ? AttnDType::F16 : AttnDType::BF16;
}
#else
[[noreturn]] void noCuda() { fail("E_DEVICE", "this build of flash-mpt has no CUDA backend"); }
#endif

// ---- attention ---------------------------------------------------------------------------------------------

struct AttentionOptions {
  bool causal = false;
  std::vector<float> slopes;
  float scale = 0.f;
};

AttentionOptions attentionOptions(const Napi::Object& o, int64_t heads, int64_t head_dim) {
  AttentionOptions a;
  a.causal = boolOr(o, "causal", false);
  if (has(o, "alibiSlopes")) a.slopes = floatList(o.Get("alibiSlopes"), "alibiSlopes");
  if (!a.slopes.empty() && int64_t(a.slopes.size()) != heads) {
    fail("E_INVALID_ARGUMENT", "alibiSlopes must hold one slope per head");
  }
  a.scale = float(numberOr(o, "softmaxScale", 1.0 / std::sqrt(double(head_dim))));
  return a;
}

// q [B, Sq, H, D], k and v [B, Sk, H, D] → o [B, Sq, H, D]; causal bottom-right aligned (query i at Sk − Sq + i).
// `naive` picks the naive same-precision kernel (the yardstick of the tolerance rule) on CUDA tensors.
Napi::Value attention(const Napi::CallbackInfo& info, bool naive) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const Storage q = tensorArg(info, 0, "q"), k = tensorArg(info, 1, "k"), v = tensorArg(info, 2, "v");
    expectRank(q, 4, "q");
    expectRank(k, 4, "k");
    const int64_t B = dim(q, 0), Sq = dim(q, 1), H = dim(q, 2), D = dim(q, 3), Sk = dim(k, 1);
    expectShape(k, {B, Sk, H, D}, "k");
    expectShape(v, {B, Sk, H, D}, "v");
    expectDType(k, q->dtype(), "k");
    expectDType(v, q->dtype(), "v");
    expectSameDevice(q, k, "k");
    expectSameDevice(q, v, "v");
    const AttentionOptions a = attentionOptions(optionsAt(info, 3), H, D);
    if (a.causal && Sq > Sk) fail("E_INVALID_ARGUMENT", "causal attention needs seqlen_q <= seqlen_k");
    auto o = std::make_shared<TensorStorage>(q->cuda(), q->dtype(), q->shape());
    if (q->cuda()) {
#if FLASH_MPT_WITH_CUDA
      const DeviceBuffer slopes = upload(a.slopes);
      FlashAttentionParams p{};
      p.q = q->data();
      p.k = k->data();
      p.v = v->data();
      p.o = o->data();
      p.q_batch_stride = p.o_batch_stride = Sq * H * D;
      p.k_batch_stride = p.v_batch_stride = Sk * H * D;
      p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = H * D;
      p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = D;
      p.batch = int(B);
      p.n_heads = int(H);
      p.seqlen_q = int(Sq);
      p.seqlen_k = int(Sk);
      p.head_dim = int(D);
      p.softmax_scale = a.scale;
      p.alibi_slopes = a.slopes.empty() ? nullptr : slopes.as<float>();
      p.causal = a.causal;
      p.dtype = attnDType(q);
      if (naive) {
        const DeviceBuffer scratch(naive_attention_scratch_bytes(p, NaiveScores::Input));
        finish(naive_attention(p, NaiveScores::Input, scratch.get(), nullptr));
      } else {
        finish(flash_attention_prefill(p, nullptr));
      }
#else
      noCuda();
#endif
    } else {
      static_cast<void>(naive);  // on CPU tensors both kernels are the fp32 reference
      const std::vector<float> qf = q->toFloat(), kf = k->toFloat(), vf = v->toFloat();
      std::vector<float> of(qf.size());
      cpu::ThreadPool pool(0);
      pool.parallelFor(B * H * Sq, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> scores(static_cast<size_t>(Sk));
        for (int64_t task = begin; task < end; ++task) {  // task = (b, h, i)
          const int64_t i = task % Sq, h = (task / Sq) % H, b = task / (Sq * H);
          const int64_t pos = Sk - Sq + i, row = ((b * Sq + i) * H + h) * D, kv = (b * Sk * H + h) * D;
          cpu::attendRow(qf.data() + row, kf.data() + kv, vf.data() + kv, KvRows{nullptr, 0, 0, H * D}, a.causal ? pos + 1 : Sk, pos, int(D),
                         a.scale, a.slopes.empty() ? 0.f : a.slopes[size_t(h)], scores.data(), of.data() + row);
        }
      });
      o->fromFloat(of.data());
    }
    return AddonTensor::wrap(info.Env(), o);
  });
}

Napi::Value jsFlashAttention(const Napi::CallbackInfo& info) { return attention(info, false); }
Napi::Value jsNaiveAttention(const Napi::CallbackInfo& info) { return attention(info, true); }

// q [B, H, D]; caches [B, S, H, D]; seqLens[b] keys of sequence b, the query at position seqLens[b] − 1.
Napi::Value jsDecodeAttention(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const Storage q = tensorArg(info, 0, "q"), k = tensorArg(info, 1, "kCache"), v = tensorArg(info, 2, "vCache");
    expectRank(q, 3, "q");
    expectRank(k, 4, "kCache");
    const int64_t B = dim(q, 0), H = dim(q, 1), D = dim(q, 2), S = dim(k, 1);
    expectShape(k, {B, S, H, D}, "kCache");
    expectShape(v, {B, S, H, D}, "vCache");
    expectDType(k, q->dtype(), "kCache");
    expectDType(v, q->dtype(), "vCache");
    expectSameDevice(q, k, "kCache");
    expectSameDevice(q, v, "vCache");
    if (info.Length() < 4) fail("E_INVALID_ARGUMENT", "seqLens is missing");
    const std::vector<int32_t> lens = intList(info[3], "seqLens");
    if (int64_t(lens.size()) != B) fail("E_INVALID_ARGUMENT", "seqLens must hold one length per sequence");
    for (int32_t len : lens) {
      if (len < 1 || len > S) fail("E_INVALID_ARGUMENT", "each seqLens entry must lie in [1, cache length]");
    }
    const AttentionOptions a = attentionOptions(optionsAt(info, 4), H, D);
    auto o = std::make_shared<TensorStorage>(q->cuda(), q->dtype(), q->shape());
    if (q->cuda()) {
#if FLASH_MPT_WITH_CUDA
      const DeviceBuffer slopes = upload(a.slopes), dLens = upload(lens);
      const DeviceBuffer workspace(decode_attention_workspace_floats(int(B), int(H), int(D), int(S)) * sizeof(float));
      const DeviceBuffer counters = upload(std::vector<unsigned>(size_t(B * H), 0u));
      DecodeAttentionParams p{};
      p.q = q->data();
      p.o = o->data();
      p.k_cache = k->data();
      p.v_cache = v->data();
      p.seq_len = dLens.as<int>();
      p.kv.batch_stride = S * H * D;
      p.kv.row_stride = H * D;
      p.head_stride = D;
      p.batch = int(B);
      p.n_heads = int(H);
      p.head_dim = int(D);
      p.max_seq_len = int(S);
      p.softmax_scale = a.scale;
      p.alibi_slopes = a.slopes.empty() ? nullptr : slopes.as<float>();
      p.workspace = workspace.as<float>();
      p.split_counters = counters.as<unsigned>();
      p.dtype = attnDType(q);
      finish(decode_attention(p, nullptr));
#else
      noCuda();
#endif
    } else {
      const std::vector<float> qf = q->toFloat(), kf = k->toFloat(), vf = v->toFloat();
      std::vector<float> of(qf.size()), scores(static_cast<size_t>(S));
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t h = 0; h < H; ++h) {
          const int64_t row = (b * H + h) * D, len = lens[size_t(b)];
          cpu::attendRow(qf.data() + row, kf.data() + (b * S * H + h) * D, vf.data() + (b * S * H + h) * D, KvRows{nullptr, 0, 0, H * D}, len,
                         len - 1, int(D), a.scale, a.slopes.empty() ? 0.f : a.slopes[size_t(h)], scores.data(),
                         of.data() + row);
        }
      }
      o->fromFloat(of.data());
    }
    return AddonTensor::wrap(info.Env(), o);
  });
}

// ---- LayerNorm, GELU, GEMM ---------------------------------------------------------------------------------

// y = LayerNorm(x (+ residual)) over the last dimension; with a residual, x is updated in place to x + residual.
Napi::Value jsLayerNorm(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const Storage x = tensorArg(info, 0, "x"), w = tensorArg(info, 1, "weight");
    const Napi::Object o = optionsAt(info, 2);
    const Storage bias = tensorOption(o, "bias"), residual = tensorOption(o, "residual");
    if (x->shape().empty() || dim(x, x->shape().size() - 1) == 0) fail("E_INVALID_ARGUMENT", "x must have a last dimension");
    const int64_t cols = dim(x, x->shape().size() - 1), rows = x->numel() / cols;
    expectShape(w, {cols}, "weight");
    expectDType(w, DType::F32, "weight");
    expectSameDevice(x, w, "weight");
    if (bias) {
      expectShape(bias, {cols}, "bias");
      expectDType(bias, DType::F32, "bias");
      expectSameDevice(x, bias, "bias");
    }
    if (residual) {
      expectShape(residual, x->shape(), "residual");
      expectDType(residual, x->dtype(), "residual");
      expectSameDevice(x, residual, "residual");
    }
    const float eps = float(numberOr(o, "eps", 1e-5));
    const DType outType = has(o, "outDtype") ? parseDType(o.Get("outDtype").ToString().Utf8Value()) : x->dtype();
    auto y = std::make_shared<TensorStorage>(x->cuda(), outType, x->shape());
    if (x->cuda()) {
#if FLASH_MPT_WITH_CUDA
      if (cols > kLayerNormMaxCols) {
        fail("E_INVALID_ARGUMENT", "the CUDA layerNorm takes rows of at most " + std::to_string(kLayerNormMaxCols) +
                                       " columns, this one has " + std::to_string(cols));
      }
      LayerNormParams p;
      p.x = x->data();
      p.residual = residual ? residual->data() : nullptr;
      p.x_out = residual ? x->data() : nullptr;
      p.y = y->data();
      p.weight = static_cast<const float*>(w->data());
      p.bias = bias ? static_cast<const float*>(bias->data()) : nullptr;
      p.rows = int(rows);
      p.cols = int(cols);
      p.eps = eps;
      p.x_dtype = x->dtype();
      p.y_dtype = outType;
      finish(layerNorm(p, nullptr));
#else
      noCuda();
#endif
    } else {
      std::vector<float> xf = x->toFloat(), yf(xf.size());
      const std::vector<float> wf = w->toFloat(), bf = bias ? bias->toFloat() : std::vector<float>(),
                               rf = residual ? residual->toFloat() : std::vector<float>();
      ref::layerNorm(xf.data(), residual ? rf.data() : nullptr, rows, cols, wf.data(), bias ? bf.data() : nullptr, eps,
                     residual ? xf.data() : nullptr, yf.data());
      if (residual) x->fromFloat(xf.data());
      y->fromFloat(yf.data());
    }
    return AddonTensor::wrap(info.Env(), y);
  });
}

Napi::Value jsGelu(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const Storage x = tensorArg(info, 0, "x");
    auto y = std::make_shared<TensorStorage>(x->cuda(), x->dtype(), x->shape());
    if (x->cuda()) {
#if FLASH_MPT_WITH_CUDA
      GeluParams p;
      p.x = x->data();
      p.y = y->data();
      p.n = x->numel();
      p.dtype = x->dtype();
      finish(gelu(p, nullptr));
#else
      noCuda();
#endif
    } else {
      std::vector<float> f = x->toFloat();
      cpu::geluErf(f.data(), int64_t(f.size()), nullptr);
      y->fromFloat(f.data());
    }
    return AddonTensor::wrap(info.Env(), y);
  });
}

// c = alpha · a·wᵀ (+ bias), a [M, K], w [N, K]; options: gelu, outDtype ('f32' or a's dtype), accumulate (an
// f32 [M, N] tensor that receives c += …, returned).
Napi::Value jsMatmul(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const Storage a = tensorArg(info, 0, "a"), w = tensorArg(info, 1, "w");
    const Napi::Object o = optionsAt(info, 2);
    expectRank(a, 2, "a");
    expectRank(w, 2, "w");
    const int64_t M = dim(a, 0), K = dim(a, 1), N = dim(w, 0);
    expectShape(w, {N, K}, "w");
    expectDType(w, a->dtype(), "w");
    expectSameDevice(a, w, "w");
    const Storage bias = tensorOption(o, "bias"), acc = tensorOption(o, "accumulate");
    if (bias) {
      expectShape(bias, {N}, "bias");
      expectDType(bias, DType::F32, "bias");
      expectSameDevice(a, bias, "bias");
    }
    const bool withGelu = boolOr(o, "gelu", false);
    const float alpha = float(numberOr(o, "alpha", 1.0));
    const DType outType =
        acc ? DType::F32 : has(o, "outDtype") ? parseDType(o.Get("outDtype").ToString().Utf8Value()) : a->dtype();
    if (acc) {
      expectShape(acc, {M, N}, "accumulate");
      expectDType(acc, DType::F32, "accumulate");
      expectSameDevice(a, acc, "accumulate");
    }
    if (outType != a->dtype() && outType != DType::F32) fail("E_INVALID_ARGUMENT", "outDtype must be 'f32' or a's dtype");
    if (a->cuda() && withGelu && outType != a->dtype()) {
      fail("E_INVALID_ARGUMENT", "the CUDA GEMM fuses gelu only into an output of a's dtype");
    }
    Storage c = acc ? acc : std::make_shared<TensorStorage>(a->cuda(), outType, std::vector<int64_t>{M, N});
    if (a->cuda()) {
#if FLASH_MPT_WITH_CUDA
      GemmParams p;
      p.a = a->data();
      p.w = w->data();
      p.c = c->data();
      p.lda = p.ldw = K;
      p.ldc = N;
      p.M = int(M);
      p.N = int(N);
      p.K = int(K);
      p.alpha = alpha;
      p.bias = bias ? static_cast<const float*>(bias->data()) : nullptr;
      p.out = acc                       ? GemmOut::AddFloat
              : outType != a->dtype() ? GemmOut::Float
              : withGelu              ? GemmOut::HalfGelu
                                      : GemmOut::Half;
      p.dtype = a->dtype();
      finish(gemm(p, nullptr));
#else
      noCuda();
#endif
    } else {
      const std::vector<float> af = a->toFloat(), wf = w->toFloat(), bf = bias ? bias->toFloat() : std::vector<float>();
      std::vector<float> cf = acc ? acc->toFloat() : std::vector<float>(size_t(M * N));
      ref::gemm(af.data(), M, K, wf.data(), N, bias ? bf.data() : nullptr, alpha,
                acc ? ref::GemmEpilogue::Accumulate : withGelu ? ref::GemmEpilogue::Gelu : ref::GemmEpilogue::Store,
                cf.data());
      c->fromFloat(cf.data());
    }
    return acc ? info[2].As<Napi::Object>().Get("accumulate") : AddonTensor::wrap(info.Env(), c);
  });
}

// ---- QKV epilogue, top-K -----------------------------------------------------------------------------------

// qkv [rows, 3·d] → q [rows, d]; k and v written into options.kCache / vCache [slots, S, d] at (slot, position0
// + r) or (slots[r], positions[r]); a negative position skips the write.
Napi::Value jsQkvEpilogue(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const Storage qkv = tensorArg(info, 0, "qkv");
    const Napi::Object o = optionsAt(info, 1);
    expectRank(qkv, 2, "qkv");
    const int64_t rows = dim(qkv, 0), d = dim(qkv, 1) / 3;
    if (dim(qkv, 1) != 3 * d || d == 0) fail("E_INVALID_ARGUMENT", "qkv must be [rows, 3·d_model]");
    const Storage kc = tensorOption(o, "kCache"), vc = tensorOption(o, "vCache");
    if (!kc || !vc) fail("E_INVALID_ARGUMENT", "kCache and vCache are required");
    expectRank(kc, 3, "kCache");
    const int64_t slots = dim(kc, 0), S = dim(kc, 1);
    expectShape(kc, {slots, S, d}, "kCache");
    expectShape(vc, {slots, S, d}, "vCache");
    for (const Storage& t : {kc, vc}) {
      expectDType(t, qkv->dtype(), "cache");
      expectSameDevice(qkv, t, "cache");
    }
    std::vector<int32_t> rowSlot(static_cast<size_t>(rows)), rowPos(static_cast<size_t>(rows));
    const bool perRow = has(o, "slots");
    if (perRow) {
      rowSlot = intList(o.Get("slots"), "slots");
      rowPos = has(o, "positions") ? intList(o.Get("positions"), "positions") : std::vector<int32_t>();
      if (int64_t(rowSlot.size()) != rows || int64_t(rowPos.size()) != rows) {
        fail("E_INVALID_ARGUMENT", "slots and positions must hold one entry per row");
      }
    } else {
      const int32_t slot = int32_t(numberOr(o, "slot", 0)), position = int32_t(numberOr(o, "position", 0));
      for (int64_t r = 0; r < rows; ++r) {
        rowSlot[size_t(r)] = slot;
        rowPos[size_t(r)] = position + int32_t(r);
      }
    }
    for (int64_t r = 0; r < rows; ++r) {  // the kernel writes where these point: keep them inside the caches
      if (rowSlot[size_t(r)] < 0 || rowSlot[size_t(r)] >= slots || rowPos[size_t(r)] >= S) {
        fail("E_INVALID_ARGUMENT", "row " + std::to_string(r) + " points outside the cache");
      }
    }
    const Storage qw = tensorOption(o, "qLnWeight"), qb = tensorOption(o, "qLnBias"), kw = tensorOption(o, "kLnWeight"),
                  kb = tensorOption(o, "kLnBias");
    if (bool(qw) != bool(kw)) fail("E_INVALID_ARGUMENT", "qLnWeight and kLnWeight go together");
    for (const Storage& t : {qw, qb, kw, kb}) {
      if (!t) continue;
      expectShape(t, {d}, "QK-LayerNorm parameter");
      expectDType(t, DType::F32, "QK-LayerNorm parameter");
      expectSameDevice(qkv, t, "QK-LayerNorm parameter");
    }
    const float clip = float(numberOr(o, "clip", 0)), eps = float(numberOr(o, "eps", 1e-5));
    auto q = std::make_shared<TensorStorage>(qkv->cuda(), qkv->dtype(), std::vector<int64_t>{rows, d});
    if (qkv->cuda()) {
#if FLASH_MPT_WITH_CUDA
      auto ptr = [](const Storage& t) { return t ? static_cast<const float*>(t->data()) : nullptr; };
      const DeviceBuffer dSlots = upload(rowSlot), dPos = upload(rowPos);
      QkvEpilogueParams p;
      p.qkv = qkv->data();
      p.q = q->data();
      p.k_cache = kc->data();
      p.v_cache = vc->data();
      p.kv.batch_stride = S * d;
      p.kv.row_stride = d;
      p.sequences = dSlots.as<int>();
      p.positions = dPos.as<int>();
      p.q_ln_weight = ptr(qw);
      p.q_ln_bias = ptr(qb);
      p.k_ln_weight = ptr(kw);
      p.k_ln_bias = ptr(kb);
      p.rows = int(rows);
      p.d_model = int(d);
      p.clip = clip;
      p.eps = eps;
      p.dtype = qkv->dtype();
      finish(qkvEpilogue(p, nullptr));
#else
      noCuda();
#endif
    } else {
      const std::vector<float> in = qkv->toFloat();
      std::vector<float> qf(size_t(rows * d)), kf(qf.size()), vf(qf.size());
      std::vector<float> kcf = kc->toFloat(), vcf = vc->toFloat();
      const std::vector<float> qwf = qw ? qw->toFloat() : std::vector<float>(), qbf = qb ? qb->toFloat() : std::vector<float>(),
                               kwf = kw ? kw->toFloat() : std::vector<float>(), kbf = kb ? kb->toFloat() : std::vector<float>();
      ref::qkvEpilogue(in.data(), rows, d, clip, qw ? qwf.data() : nullptr, qb ? qbf.data() : nullptr,
                       kw ? kwf.data() : nullptr, kb ? kbf.data() : nullptr, eps, qf.data(), kf.data(), vf.data());
      for (int64_t r = 0; r < rows; ++r) {
        if (rowPos[size_t(r)] < 0) continue;
        const int64_t at = (int64_t(rowSlot[size_t(r)]) * S + rowPos[size_t(r)]) * d;
        std::copy(kf.begin() + r * d, kf.begin() + (r + 1) * d, kcf.begin() + at);
        std::copy(vf.begin() + r * d, vf.begin() + (r + 1) * d, vcf.begin() + at);
      }
      kc->fromFloat(kcf.data());
      vc->fromFloat(vcf.data());
      q->fromFloat(qf.data());
    }
    return AddonTensor::wrap(info.Env(), q);
  });
}

// logits [rows, vocab] f32 → { values: Float32Array [rows·k], indices: Int32Array [rows·k], lse: Float32Array [rows] }.
Napi::Value jsTopK(const Napi::CallbackInfo& info) {
  return rethrowAsJs(info.Env(), [&]() -> Napi::Value {
    const Storage logits = tensorArg(info, 0, "logits");
    expectRank(logits, 2, "logits");
    expectDType(logits, DType::F32, "logits");
    const int64_t rows = dim(logits, 0), vocab = dim(logits, 1);
    if (info.Length() < 2 || !info[1].IsNumber()) fail("E_INVALID_ARGUMENT", "k must be a number");
    const int k = info[1].As<Napi::Number>().Int32Value();
    if (k < 1 || k > vocab) fail("E_INVALID_ARGUMENT", "k must lie in [1, vocab]");
    Napi::Float32Array values = Napi::Float32Array::New(info.Env(), size_t(rows * k));
    Napi::Int32Array indices = Napi::Int32Array::New(info.Env(), size_t(rows * k));
    Napi::Float32Array lse = Napi::Float32Array::New(info.Env(), size_t(rows));
    if (logits->cuda()) {
#if FLASH_MPT_WITH_CUDA
      if (k > kTopKMax) fail("E_INVALID_ARGUMENT", "the top-K kernel takes k up to " + std::to_string(kTopKMax));
      const DeviceBuffer dValues(size_t(rows * k) * 4), dIndices(size_t(rows * k) * 4), dLse(size_t(rows) * 4),
          workspace(topKWorkspaceFloats(int(rows), int(vocab), k) * 4);
      TopKParams p;
      p.logits = static_cast<const float*>(logits->data());
      p.row_stride = vocab;
      p.rows = int(rows);
      p.vocab = int(vocab);
      p.k = k;
      p.values = dValues.as<float>();
      p.indices = dIndices.as<int32_t>();
      p.lse = dLse.as<float>();
      p.workspace = workspace.as<float>();
      finish(topK(p, nullptr));
      CUDA_CHECK(cudaMemcpy(values.Data(), dValues.get(), dValues.bytes(), cudaMemcpyDeviceToHost));
      CUDA_CHECK(cudaMemcpy(indices.Data(), dIndices.get(), dIndices.bytes(), cudaMemcpyDeviceToHost));
      CUDA_CHECK(cudaMemcpy(lse.Data(), dLse.get(), dLse.bytes(), cudaMemcpyDeviceToHost));
#else
      noCuda();
#endif
    } else {
      const std::vector<float> f = logits->toFloat();
      for (int64_t r = 0; r < rows; ++r) {
        ref::topK(f.data() + r * vocab, int(vocab), k, values.Data() + r * k, indices.Data() + r * k, lse.Data() + r);
      }
    }
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("values", values);
    out.Set("indices", indices);
    out.Set("lse", lse);
    return out;
  });
}

}  // namespace

void initKernels(Napi::Env env, Napi::Object kernels) {
  kernels.Set("flashAttention", Napi::Function::New(env, jsFlashAttention, "flashAttention"));
  kernels.Set("naiveAttention", Napi::Function::New(env, jsNaiveAttention, "naiveAttention"));
  kernels.Set("decodeAttention", Napi::Function::New(env, jsDecodeAttention, "decodeAttention"));
  kernels.Set("layerNorm", Napi::Function::New(env, jsLayerNorm, "layerNorm"));
  kernels.Set("gelu", Napi::Function::New(env, jsGelu, "gelu"));
  kernels.Set("matmul", Napi::Function::New(env, jsMatmul, "matmul"));
  kernels.Set("qkvEpilogue", Napi::Function::New(env, jsQkvEpilogue, "qkvEpilogue"));
  kernels.Set("topK", Napi::Function::New(env, jsTopK, "topK"));
}

}  // namespace flashmpt
