// Byte counts in error messages, in GiB as `flash-mpt doctor` reports memory.
#pragma once
#include <cstdio>
#include <string>

namespace flashmpt {

inline std::string formatGiB(double bytes) {
  char text[48];
  std::snprintf(text, sizeof(text), "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return text;
}

}  // namespace flashmpt
