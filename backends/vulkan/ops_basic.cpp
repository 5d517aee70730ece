// Dense ops: embed, rms_norm, matmul, rope, silu_mul, gelu_mul, scale, softcap, add. Push-constant structs mirror the
// `Params` blocks of the shaders of the same name field for field (sizes are checked against
// SPIR-V reflection at dispatch).
#include <algorithm>
#include <cstring>

#include "backends/vulkan/vulkan_backend_impl.h"

namespace pagoda::vk {
namespace {

// Every weight layout has a decoder in shaders/dequant.glsl.
Status check_weight_layout(const Tensor& w, const char* what) {
  if (w.dtype == DType::I32 || size_t(w.dtype) >= size_t(DType::kCount))
    return make_error(std::string(what) + " of dtype " + dtype_name(w.dtype) + " is not supported on vulkan");
  const int64_t block = dtype_block_elems(w.dtype);
  if (w.cols % block != 0)
    return make_error(std::string(what) + " has " + std::to_string(w.cols) + " columns, not a multiple of " +
                      std::to_string(block));
  // Shaders address F32 tables by word and the other layouts by 16-bit halves (every block is an
  // even number of bytes, so its fields stay at even addresses).
  if (w.offset % (w.dtype == DType::F32 ? 4 : 2) != 0)
    return make_error(std::string(what) + " starts at a misaligned byte offset " + std::to_string(w.offset));
  return {};
}

// Elements one embed invocation writes: dequant.glsl's unit (w_unit_elems) for block types.
int64_t embed_unit(DType t) {
  if (!dtype_info(t).quantized) return 1;
  return dtype_block_elems(t) == 256 ? 32 : 16;
}

uint32_t u32(int64_t v) { return uint32_t(v); }

}  // namespace

Status VulkanBackend::embed_impl(const Tensor& table, const Tensor& ids, const Tensor& out) {
  struct Push { uint32_t table_off, ids_off, out_off, n_ids, dim, row_bytes; int32_t row_lo, row_hi; };
  const int64_t n = ids.rows, dim = table.cols;
  if (n == 0 || dim == 0) return {};
  PAGODA_TRY(check_weight_layout(table, "embedding table"));
  PAGODA_BIND(bi, bind(ids, 4, size_t(n) * 4));
  PAGODA_BIND(bo, bind(out, 4, size_t(n * dim) * 4));
  // A table too large for one descriptor is bound in row chunks, one dispatch per chunk.
  const int64_t row_bytes = int64_t(table.row_stride());
  const int64_t chunk = std::max<int64_t>(1, int64_t(max_binding_bytes() - 256) / row_bytes);
  for (int64_t r0 = 0; r0 < table.rows; r0 += chunk) {
    const int64_t cnt = std::min(chunk, table.rows - r0);
    PAGODA_BIND(bt, bind(table.row_slice(r0, cnt), 1));
    const Push p{bt.elem, bi.elem, bo.elem, u32(n), u32(dim), u32(row_bytes), int32_t(r0), int32_t(r0 + cnt)};
    PAGODA_TRY(run("embed", {{kSpecLocalSize, elem_group_}, {kSpecDType, uint32_t(table.dtype)}},
                   {bt.binding, bi.binding, bo.binding}, p,
                   ceil_div(uint64_t(n * (dim / embed_unit(table.dtype))), elem_group_)));
  }
  return {};
}

void VulkanBackend::embed(const Tensor& table, const Tensor& ids, const Tensor& out) {
  guarded("embed", [&] { return embed_impl(table, ids, out); });
}

void VulkanBackend::rms_norm(const Tensor& x, const Tensor& w, const Tensor& out, float eps) {
  guarded("rms_norm", [&]() -> Status {
    struct Push { uint32_t x_off, w_off, out_off, n_rows, dim; float eps; };
    if (x.rows == 0 || x.cols == 0) return {};
    PAGODA_BIND(bx, bind(x, 4));
    PAGODA_BIND(bw, bind(w, 4, size_t(x.cols) * 4));
    PAGODA_BIND(bo, bind(out, 4, x.bytes()));
    const Push p{bx.elem, bw.elem, bo.elem, u32(x.rows), u32(x.cols), eps};
    return run("rms_norm", {{kSpecLocalSize, row_group_}}, {bx.binding, bw.binding, bo.binding}, p, uint64_t(x.rows));
  });
}

Status VulkanBackend::matmul_impl(const Tensor& w, const Tensor& x, const Tensor& out) {
  struct Push { uint32_t w_off, x_off, out_off, n_rows, n_in, n_out, out_stride, w_row_bytes; };
  const int64_t n = x.rows;
  if (n == 0 || w.rows == 0) return {};
  PAGODA_TRY(check_weight_layout(w, "weight"));
  if (x.cols != w.cols)
    return make_error("x has " + std::to_string(x.cols) + " columns, the weight " + std::to_string(w.cols));
  if (out.cols < w.rows)
    return make_error("out has " + std::to_string(out.cols) + " columns for " + std::to_string(w.rows) + " outputs");
  PAGODA_BIND(bx, bind(x, 4));
  PAGODA_BIND(bo, bind(out, 4, size_t(n) * size_t(out.cols) * 4));
  // Decode (one row) has its own variant: the 4-row one would do 4x the arithmetic for nothing.
  const char* shader = n == 1 ? "matmul_r1" : "matmul";
  const uint64_t row_blocks = n == 1 ? 1 : ceil_div(uint64_t(n), 4);
  // Weights larger than one descriptor's range run as several dispatches over row chunks.
  const int64_t row_bytes = int64_t(w.row_stride());
  const int64_t chunk = std::max<int64_t>(1, int64_t(max_binding_bytes() - 256) / row_bytes);
  for (int64_t o0 = 0; o0 < w.rows; o0 += chunk) {
    const int64_t cnt = std::min(chunk, w.rows - o0);
    PAGODA_BIND(bw, bind(w.row_slice(o0, cnt), 1));
    const Push p{bw.elem, bx.elem, bo.elem + u32(o0), u32(n), u32(w.cols), u32(cnt), u32(out.cols), u32(row_bytes)};
    PAGODA_TRY(run(shader, {{kSpecLocalSize, matmul_group_}, {kSpecDType, uint32_t(w.dtype)}},
                   {bw.binding, bx.binding, bo.binding}, p, uint64_t(cnt) * row_blocks, "matmul"));
  }
  return {};
}

void VulkanBackend::matmul(const Tensor& w, const Tensor& x, const Tensor& out) {
  guarded("matmul", [&] { return matmul_impl(w, x, out); });
}

Status VulkanBackend::rope_impl(const Tensor& x, const Tensor& pos, const Tensor* factors, int32_t n_heads,
                                int32_t head_dim, float theta) {
  struct Push { uint32_t x_off, pos_off, freq_off, factor_off, n_rows, row_stride, n_heads, half_dim, has_factors; };
  if (x.rows == 0 || n_heads <= 0 || head_dim <= 0) return {};
  if (head_dim % 2 != 0) return make_error("head_dim " + std::to_string(head_dim) + " is odd");
  if (int64_t(n_heads) * head_dim > x.cols)
    return make_error(std::to_string(n_heads) + " heads of " + std::to_string(head_dim) + " exceed a row of " +
                      std::to_string(x.cols));
  const uint32_t half = u32(head_dim / 2);
  if (factors) {
    if (!factors->buf) return make_error("freq_factors has no buffer");
    if (factors->dtype != DType::F32 || factors->rows * factors->cols != half)
      return make_error("freq_factors must be F32 with head_dim/2 = " + std::to_string(half) + " values, not " +
                        dtype_name(factors->dtype) + " [" + std::to_string(factors->rows) + ", " +
                        std::to_string(factors->cols) + "]");
  }
  auto freqs = rope_freq_table(theta, head_dim);
  if (!freqs) return freqs.take_error();
  PAGODA_BIND(bx, bind(x, 4));
  PAGODA_BIND(bp, bind(pos, 4, size_t(x.rows) * 4));
  PAGODA_BIND(bff, bind(factors ? *factors : Tensor{}, 4, size_t(half) * 4));
  const Binding bf{*freqs, 0, (*freqs)->capacity()};
  const Push p{bx.elem, bp.elem, 0, bff.elem, u32(x.rows), u32(x.cols), u32(n_heads), half, factors ? 1u : 0u};
  return run("rope", {{kSpecLocalSize, elem_group_}}, {bx.binding, bp.binding, bf, bff.binding}, p,
             ceil_div(uint64_t(x.rows) * uint64_t(n_heads) * half, elem_group_));
}

void VulkanBackend::rope(const Tensor& x, const Tensor& pos, int32_t n_heads, int32_t head_dim, float theta) {
  guarded("rope", [&] { return rope_impl(x, pos, nullptr, n_heads, head_dim, theta); });
}

void VulkanBackend::rope_freqs(const Tensor& x, const Tensor& pos, const Tensor& freq_factors, int32_t n_heads,
                               int32_t head_dim, float theta) {
  guarded("rope_freqs", [&] { return rope_impl(x, pos, &freq_factors, n_heads, head_dim, theta); });
}

// One dispatch for every f32 op out[i] = f(a[i], b[i]) (add, silu_mul, gelu_mul).
Status VulkanBackend::binary_impl(const char* name, const Tensor& gate, const Tensor& up, const Tensor& out) {
  struct Push { uint32_t gate_off, up_off, out_off, n; };
  const int64_t n = gate.rows * gate.cols;
  if (n == 0) return {};
  PAGODA_BIND(bg, bind(gate, 4));
  PAGODA_BIND(bu, bind(up, 4, size_t(n) * 4));
  PAGODA_BIND(bo, bind(out, 4, size_t(n) * 4));
  const Push p{bg.elem, bu.elem, bo.elem, u32(n)};
  return run(name, {{kSpecLocalSize, elem_group_}}, {bg.binding, bu.binding, bo.binding}, p,
             ceil_div(uint64_t(n), elem_group_));
}

void VulkanBackend::silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) {
  guarded("silu_mul", [&] { return binary_impl("silu_mul", gate, up, out); });
}

void VulkanBackend::gelu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) {
  guarded("gelu_mul", [&] { return binary_impl("gelu_mul", gate, up, out); });
}

// scale and softcap share one shader (scale.comp): cap > 0 selects the soft cap.
Status VulkanBackend::scale_or_cap(const Tensor& x, const Tensor& out, float s, float cap) {
  struct Push { uint32_t x_off, out_off, n; float s, cap; };
  const int64_t n = x.rows * x.cols;
  if (n == 0) return {};
  PAGODA_BIND(bx, bind(x, 4));
  PAGODA_BIND(bo, bind(out, 4, size_t(n) * 4));
  const Push p{bx.elem, bo.elem, u32(n), s, cap};
  return run("scale", {{kSpecLocalSize, elem_group_}}, {bx.binding, bo.binding}, p, ceil_div(uint64_t(n), elem_group_));
}

void VulkanBackend::scale(const Tensor& x, const Tensor& out, float s) {
  guarded("scale", [&]() -> Status { return scale_or_cap(x, out, s, 0.0f); });
}

void VulkanBackend::softcap(const Tensor& x, const Tensor& out, float cap) {
  guarded("softcap", [&]() -> Status {
    if (!(cap > 0)) return make_error("softcap needs a cap > 0");
    return scale_or_cap(x, out, 1.0f, cap);
  });
}

void VulkanBackend::copy(const Tensor& src, const Tensor& dst) {
  guarded("copy", [&]() -> Status {
    if (src.dtype != dst.dtype || src.rows != dst.rows || src.cols != dst.cols)
      return make_error("src and dst differ in dtype or shape");
    auto s = buffer_of(src);
    if (!s) return s.take_error();
    auto d = buffer_of(dst);
    if (!d) return d.take_error();
    const size_t n = src.bytes();
    if (src.offset + n > (*s)->size() || dst.offset + n > (*d)->size())
      return make_error(std::to_string(n) + " bytes overrun the source or destination buffer");
    if (*s == *d && src.offset < dst.offset + n && dst.offset < src.offset + n)
      return make_error("src and dst overlap");
    return seq_->copy(**s, src.offset, **d, dst.offset, n);
  });
}

void VulkanBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  guarded("add", [&] { return binary_impl("add", a, b, out); });
}

}  // namespace pagoda::vk
