#include <cmath>
#include <string>

#include "csrc/engine/engine.h"
#include "csrc/runtime/errors.h"

namespace flashmpt {

void validateModelConfig(const ModelConfig& c) {
  auto positive = [](int value, const char* field) {
    if (value <= 0) fail("E_CONFIG", std::string(field) + " must be positive, got " + std::to_string(value));
  };
  positive(c.d_model, "d_model");
  positive(c.n_heads, "n_heads");
  positive(c.n_layers, "n_layers");
  positive(c.d_ff, "d_ff");
  positive(c.vocab_size, "vocab_size");
  if (c.d_model % c.n_heads != 0) {
    fail("E_CONFIG", "d_model " + std::to_string(c.d_model) + " is not a multiple of n_heads " + std::to_string(c.n_heads));
  }
  if (!c.alibi_slopes.empty() && int(c.alibi_slopes.size()) != c.n_heads) {
    fail("E_CONFIG", "alibi_slopes has " + std::to_string(c.alibi_slopes.size()) + " values for " +
                         std::to_string(c.n_heads) + " heads");
  }
  if (!(c.softmax_scale > 0.f) || !std::isfinite(c.softmax_scale)) fail("E_CONFIG", "softmax_scale must be positive");
  if (!(c.ln_eps > 0.f)) fail("E_CONFIG", "ln_eps must be positive");
}

}  // namespace flashmpt
