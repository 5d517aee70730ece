#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "backends/backend.h"

namespace pagoda {
namespace {

// Indexed by DType. Block sizes are ggml's (ggml-common.h's block_* structs).
constexpr DTypeInfo kTypes[] = {
    {"f32", 1, 4, false},       {"f16", 1, 2, false},       {"q8_0", 32, 34, true},   {"q4_0", 32, 18, true},
    {"i32", 1, 4, false},       {"bf16", 1, 2, false},      {"q4_1", 32, 20, true},   {"q5_0", 32, 22, true},
    {"q5_1", 32, 24, true},     {"iq4_nl", 32, 18, true},   {"q2_k", 256, 84, true},  {"q3_k", 256, 110, true},
    {"q4_k", 256, 144, true},   {"q5_k", 256, 176, true},   {"q6_k", 256, 210, true},
};
static_assert(sizeof(kTypes) / sizeof(kTypes[0]) == size_t(DType::kCount), "one row per DType");

}  // namespace

const DTypeInfo& dtype_info(DType t) {
  static const DTypeInfo kUnknown{"?", 1, 0, false};
  return size_t(t) < size_t(DType::kCount) ? kTypes[size_t(t)] : kUnknown;
}

const char* dtype_name(DType t) { return dtype_info(t).name; }
int64_t dtype_block_elems(DType t) { return dtype_info(t).block_elems; }
int64_t dtype_block_bytes(DType t) { return dtype_info(t).block_bytes; }

std::optional<DType> dtype_from_name(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (size_t i = 0; i < size_t(DType::kCount); ++i)
    if (lower == kTypes[i].name) return DType(i);
  return std::nullopt;
}

Result<BufferPtr> Backend::adopt_host(const void* src, size_t bytes, std::shared_ptr<const void>, bool* in_place) {
  *in_place = false;
  auto buf = alloc(bytes);
  if (!buf) return buf.take_error();
  upload(Tensor{buf->get(), 0, DType::I32, 1, int64_t(bytes / 4)}, src, bytes);
  return buf;
}

void Backend::matmul_many(const Tensor& x, const Tensor* ws, const Tensor* outs, size_t n) {
  for (size_t i = 0; i < n; ++i) matmul(ws[i], x, outs[i]);
}
void Backend::rope_freqs(const Tensor&, const Tensor&, const Tensor&, int32_t, int32_t, float) {
  // Callers check supports(Op::RopeFreqs, F32) first; reaching this is a programming error.
  std::fprintf(stderr, "internal error: backend %s has no rope_freqs op\n", info().name.c_str());
  std::abort();
}

namespace {
[[noreturn]] void missing_op(const Backend& b, const char* op) {
  std::fprintf(stderr, "internal error: backend %s has no %s op\n", b.info().name.c_str(), op);
  std::abort();
}
}  // namespace

void Backend::gelu_mul(const Tensor&, const Tensor&, const Tensor&) { missing_op(*this, "gelu_mul"); }
void Backend::scale(const Tensor&, const Tensor&, float) { missing_op(*this, "scale"); }
void Backend::softcap(const Tensor&, const Tensor&, float) { missing_op(*this, "softcap"); }
void Backend::adjust_logits(const Tensor&, const Tensor&) { missing_op(*this, "adjust_logits"); }
void Backend::filter_probs(const Tensor&, const Tensor&, const Tensor&) { missing_op(*this, "filter_probs"); }

const char* op_name(Op op) {
  static const char* kNames[] = {"embed", "rms_norm", "matmul", "rope", "silu_mul", "add", "kv_store",
                                 "paged_attention", "softmax", "argmax", "sample_probs", "verify", "copy",
                                 "rope_freqs", "gelu_mul", "scale", "softcap", "attention_window",
                                 "adjust_logits", "filter_probs"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == size_t(Op::kCount), "one name per Op");
  const auto i = size_t(op);
  return i < sizeof(kNames) / sizeof(kNames[0]) ? kNames[i] : "?";
}

}  // namespace pagoda
