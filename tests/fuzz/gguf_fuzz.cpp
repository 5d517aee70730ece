// libFuzzer target for the GGUF reader: any byte string must parse or fail cleanly, and anything
// accepted must describe tensors that lie inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/gguf/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = pagoda::GgufFile::parse(data, size);
  if (!f) return 0;
  for (const auto& t : (*f)->tensors()) {
    if ((*f)->data_offset() + t.offset + t.n_bytes > size) std::abort();
    volatile uint8_t sink = t.n_bytes ? (*f)->tensor_data(t)[t.n_bytes - 1] : 0;
    (void)sink;
  }
  for (const auto& [k, v] : (*f)->metadata()) {
    (void)v.as_int();
    (void)v.as_string();
  }
  return 0;
}
