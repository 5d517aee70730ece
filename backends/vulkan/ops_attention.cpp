// KV-cache ops: kv_store (scatter into the paged pool) and paged_attention. Push-constant structs
// mirror the shaders' `Params` blocks field for field.
#include <algorithm>

#include "backends/vulkan/vulkan_backend_impl.h"

namespace pagoda::vk {
namespace {

Status check_cache(const Tensor& c, int64_t kv_cols, const char* what) {
  if (c.dtype != DType::F32 && c.dtype != DType::F16)
    return make_error(std::string(what) + " dtype " + dtype_name(c.dtype) + " is not supported (f32 or f16)");
  if (c.cols != kv_cols)
    return make_error(std::string(what) + " has " + std::to_string(c.cols) + " columns, expected " + std::to_string(kv_cols));
  // F16 rows are read and written as words holding two halves.
  if (c.dtype == DType::F16 && (kv_cols % 2 != 0 || c.offset % 4 != 0))
    return make_error(std::string(what) + " in f16 needs an even row width and a 4-byte aligned start");
  return {};
}

}  // namespace

Status VulkanBackend::kv_store_impl(const Tensor& k, const Tensor& v, const Tensor& kc, const Tensor& vc,
                                    const Tensor& slots) {
  struct Push { uint32_t k_off, v_off, kc_off, vc_off, slots_off, n_rows, kv_cols; };
  const int64_t n = k.rows, cols = k.cols;
  if (n == 0 || cols == 0) return {};
  PAGODA_TRY(check_cache(kc, cols, "k cache"));
  PAGODA_TRY(check_cache(vc, cols, "v cache"));
  if (kc.dtype != vc.dtype) return make_error("k and v caches differ in dtype");
  PAGODA_BIND(bk, bind(k, 4));
  PAGODA_BIND(bv, bind(v, 4, k.bytes()));
  PAGODA_BIND(bkc, bind(kc, 4));
  PAGODA_BIND(bvc, bind(vc, 4));
  PAGODA_BIND(bs, bind(slots, 4, size_t(n) * 4));
  const Push p{bk.elem, bv.elem, bkc.elem, bvc.elem, bs.elem, uint32_t(n), uint32_t(cols)};
  const uint64_t per_row = kc.dtype == DType::F16 ? uint64_t(cols) / 2 : uint64_t(cols);
  return run("kv_store", {{kSpecLocalSize, elem_group_}, {kSpecDType, uint32_t(kc.dtype)}},
             {bk.binding, bv.binding, bkc.binding, bvc.binding, bs.binding}, p, ceil_div(uint64_t(n) * per_row, elem_group_));
}

void VulkanBackend::kv_store(const Tensor& k, const Tensor& v, const Tensor& k_cache, const Tensor& v_cache,
                             const Tensor& slots) {
  guarded("kv_store", [&] { return kv_store_impl(k, v, k_cache, v_cache, slots); });
}

Status VulkanBackend::attention_impl(const Tensor& q, const Tensor& kc, const Tensor& vc, const Tensor& seqs,
                                     const Tensor& bt, const Tensor& out, const AttentionParams& p) {
  struct Push {
    uint32_t q_off, kc_off, vc_off, seq_off, bt_off, out_off, n_tokens, n_seqs, n_heads, n_kv_heads, head_dim,
        block_size, q_stride, out_stride;
    float scale;
    uint32_t n_splits, split_len, window;
    float softcap;
  };
  struct CombinePush {
    uint32_t out_off, n_tokens, n_heads, head_dim, n_splits, out_stride;
  };
  if (q.rows == 0 || p.n_seqs == 0 || p.n_heads == 0) return {};
  // The shader keeps 4 output dimensions per invocation of its 64-wide workgroup.
  if (p.head_dim <= 0 || p.head_dim > 256 || p.head_dim % 2 != 0)
    return make_error("head_dim " + std::to_string(p.head_dim) + " is unsupported (even, at most 256)");
  if (p.n_kv_heads <= 0 || p.n_heads % p.n_kv_heads != 0)
    return make_error(std::to_string(p.n_heads) + " heads do not group over " + std::to_string(p.n_kv_heads) + " kv heads");
  if (p.block_size <= 0) return make_error("block_size must be positive");
  const int64_t kv_cols = int64_t(p.n_kv_heads) * p.head_dim, q_cols = int64_t(p.n_heads) * p.head_dim;
  if (q.cols < q_cols || out.cols < q_cols) return make_error("q/out rows are narrower than n_heads * head_dim");
  PAGODA_TRY(check_cache(kc, kv_cols, "k cache"));
  PAGODA_TRY(check_cache(vc, kv_cols, "v cache"));
  if (kc.dtype != vc.dtype) return make_error("k and v caches differ in dtype");
  PAGODA_BIND(bq, bind(q, 4));
  PAGODA_BIND(bkc, bind(kc, 4));
  PAGODA_BIND(bvc, bind(vc, 4));
  PAGODA_BIND(bs, bind(seqs, 4, size_t(p.n_seqs) * sizeof(SeqInfo)));
  PAGODA_BIND(bb, bind(bt, 4));
  PAGODA_BIND(bo, bind(out, 4, size_t(q.rows) * size_t(out.cols) * 4));
  // Split-K over the context when rows x heads alone are too few workgroups to fill a GPU (decode
  // at long context with a small batch). Depends only on the shapes, so every device (lavapipe in
  // the tests too) runs the same plan.
  constexpr uint64_t kTargetGroups = 1024;
  constexpr int32_t kMinSplit = 256, kMaxSplits = 64, kWg = 64;
  // One workgroup per (row, KV head, chunk of up to 4 of its query heads): the shader's HGN.
  const int64_t group = p.n_heads / p.n_kv_heads, hgn = std::min<int64_t>(group, 4), chunks = (group + hgn - 1) / hgn;
  const uint64_t groups = uint64_t(q.rows) * uint64_t(p.n_kv_heads) * uint64_t(chunks);
  const uint64_t head_rows = uint64_t(q.rows) * uint64_t(p.n_heads);
  uint32_t n_splits = 1, split_len = 0;
  if (groups < kTargetGroups && p.max_ctx_len > 2 * kMinSplit) {
    const int64_t want = std::min<int64_t>({int64_t((kTargetGroups + groups - 1) / groups),
                                            (p.max_ctx_len + kMinSplit - 1) / kMinSplit, kMaxSplits});
    split_len = uint32_t((p.max_ctx_len + want - 1) / want + kWg - 1) / kWg * kWg;
    n_splits = uint32_t((p.max_ctx_len + int64_t(split_len) - 1) / split_len);
  }
  Tensor parts_t;  // no buffer: bind() gives the dummy, as the shader reads no partials then
  if (n_splits > 1) {
    const size_t bytes = size_t(head_rows) * n_splits * size_t(p.head_dim + 2) * 4;
    if (!attn_parts_ || attn_parts_->size() < bytes) {
      attn_parts_.reset();  // retired by the device until pending work that used it completes
      auto b = alloc(bytes);
      if (!b) return make_error("attention split-K scratch: " + b.error());
      attn_parts_ = std::move(*b);
    }
    parts_t = Tensor{attn_parts_.get(), 0, DType::F32, int64_t(bytes / 4), 1};
  }
  PAGODA_BIND(parts, bind(parts_t, 4));
  const Push push{bq.elem,         bkc.elem,
                  bvc.elem,        bs.elem,
                  bb.elem,         bo.elem,
                  uint32_t(q.rows), uint32_t(p.n_seqs),
                  uint32_t(p.n_heads), uint32_t(p.n_kv_heads),
                  uint32_t(p.head_dim), uint32_t(p.block_size),
                  uint32_t(q.cols), uint32_t(out.cols),
                  p.scale,         n_splits,
                  n_splits > 1 ? split_len : 0u,
                  uint32_t(std::max(p.window, 0)), p.softcap};
  PAGODA_TRY(run("paged_attention", {{kSpecDType, uint32_t(kc.dtype)}, {kSpecHeadsPerGroup, uint32_t(hgn)}},
                 {bq.binding, bkc.binding, bvc.binding, bs.binding, bb.binding, bo.binding, parts.binding}, push,
                 groups * n_splits));
  if (n_splits == 1) return {};
  const CombinePush cp{bo.elem, uint32_t(q.rows), uint32_t(p.n_heads), uint32_t(p.head_dim), n_splits, uint32_t(out.cols)};
  return run("attention_combine", {}, {parts.binding, bo.binding}, cp, head_rows, "paged_attention");
}

void VulkanBackend::paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const Tensor& seqs,
                                    const Tensor& block_tables, const Tensor& out, const AttentionParams& p) {
  guarded("paged_attention", [&] { return attention_impl(q, k_cache, v_cache, seqs, block_tables, out, p); });
}

}  // namespace pagoda::vk
