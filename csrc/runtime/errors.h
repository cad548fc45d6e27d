// One error type for all native code. `code` is one of lib/errors.ts's ErrorCode values; the N-API
// layer turns a FlashError into a JS Error whose message is "[CODE] message" (see fromNativeError).
#pragma once
#include <stdexcept>
#include <string>

namespace flashmpt {

struct FlashError : std::runtime_error {
  std::string code;
  FlashError(std::string code_, const std::string& message) : std::runtime_error(message), code(std::move(code_)) {}
};

[[noreturn]] inline void fail(const char* code, const std::string& message) { throw FlashError(code, message); }

}  // namespace flashmpt
