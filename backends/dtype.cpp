#include "backends/backend.h"

namespace pagoda {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::Q8_0: return "q8_0";
    case DType::Q4_0: return "q4_0";
    case DType::I32: return "i32";
  }
  return "?";
}

int64_t dtype_block_elems(DType t) { return (t == DType::Q8_0 || t == DType::Q4_0) ? 32 : 1; }

int64_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::Q8_0: return 34;
    case DType::Q4_0: return 18;
    case DType::I32: return 4;
  }
  return 0;
}

const char* op_name(Op op) {
  static const char* kNames[] = {"embed", "rms_norm", "matmul", "rope", "silu_mul", "add", "kv_store",
                                 "paged_attention", "softmax", "argmax", "sample_probs", "verify", "copy"};
  const auto i = size_t(op);
  return i < sizeof(kNames) / sizeof(kNames[0]) ? kNames[i] : "?";
}

}  // namespace pagoda
