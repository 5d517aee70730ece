// Sampling-side ops: softmax, argmax, sample_probs, verify, adjust_logits, filter_probs. Push-constant structs mirror the
// shaders' `Params` blocks field for field.
#include "backends/vulkan/vulkan_backend_impl.h"

namespace pagoda::vk {

void VulkanBackend::softmax(const Tensor& x, const Tensor& out, float temperature) {
  guarded("softmax", [&]() -> Status {
    struct Push { uint32_t x_off, out_off, n_rows, cols; float temperature; };
    if (x.rows == 0 || x.cols == 0) return {};
    PAGODA_BIND(bx, bind(x, 4));
    PAGODA_BIND(bo, bind(out, 4, x.bytes()));
    const Push p{bx.elem, bo.elem, uint32_t(x.rows), uint32_t(x.cols), temperature};
    return run("softmax", {{kSpecLocalSize, row_group_}}, {bx.binding, bo.binding}, p, uint64_t(x.rows));
  });
}

void VulkanBackend::argmax(const Tensor& x, const Tensor& out) {
  guarded("argmax", [&]() -> Status {
    struct Push { uint32_t x_off, out_off, n_rows, cols; };
    if (x.rows == 0 || x.cols == 0) return {};
    PAGODA_BIND(bx, bind(x, 4));
    PAGODA_BIND(bo, bind(out, 4, size_t(x.rows) * 4));
    const Push p{bx.elem, bo.elem, uint32_t(x.rows), uint32_t(x.cols)};
    return run("argmax", {{kSpecLocalSize, row_group_}}, {bx.binding, bo.binding}, p, uint64_t(x.rows));
  });
}

void VulkanBackend::sample_probs(const Tensor& probs, const Tensor& u, const Tensor& out) {
  guarded("sample_probs", [&]() -> Status {
    struct Push { uint32_t p_off, u_off, out_off, n_rows, cols; };
    if (probs.rows == 0 || probs.cols == 0) return {};
    PAGODA_BIND(bp, bind(probs, 4));
    PAGODA_BIND(bu, bind(u, 4, size_t(probs.rows) * 4));
    PAGODA_BIND(bo, bind(out, 4, size_t(probs.rows) * 4));
    const Push p{bp.elem, bu.elem, bo.elem, uint32_t(probs.rows), uint32_t(probs.cols)};
    return run("sample_probs", {{kSpecLocalSize, row_group_}}, {bp.binding, bu.binding, bo.binding}, p,
               uint64_t(probs.rows));
  });
}

Status VulkanBackend::verify_impl(const Tensor& target, const Tensor& draft_probs, const Tensor& draft_tokens,
                                  const Tensor& meta, const Tensor& uniforms, const Tensor& out, const VerifyParams& p) {
  struct Push {
    uint32_t t_off, d_off, tok_off, meta_off, u_off, out_off, n_seqs, vocab, tok_stride, u_stride, greedy;
  };
  if (p.n_seqs == 0) return {};
  if (p.vocab <= 0) return make_error("vocab must be positive");
  if (target.cols != p.vocab) return make_error("target rows are not vocab wide");
  PAGODA_BIND(bt, bind(target, 4));
  // Greedy verification reads neither draft probabilities nor uniforms; they may be absent.
  PAGODA_BIND(bd, p.greedy && !draft_probs.buf ? bind(Tensor{}, 4) : bind(draft_probs, 4));
  PAGODA_BIND(bk, bind(draft_tokens, 4));
  PAGODA_BIND(bm, bind(meta, 4, size_t(p.n_seqs) * 12));
  PAGODA_BIND(bu, p.greedy && !uniforms.buf ? bind(Tensor{}, 4) : bind(uniforms, 4));
  PAGODA_BIND(bo, bind(out, 4, size_t(p.n_seqs) * 8));
  const Push push{bt.elem, bd.elem, bk.elem, bm.elem, bu.elem, bo.elem, uint32_t(p.n_seqs), uint32_t(p.vocab),
                  uint32_t(draft_tokens.cols), uint32_t(uniforms.cols), p.greedy ? 1u : 0u};
  return run("verify", {{kSpecLocalSize, row_group_}},
             {bt.binding, bd.binding, bk.binding, bm.binding, bu.binding, bo.binding}, push, uint64_t(p.n_seqs));
}

void VulkanBackend::verify(const Tensor& target, const Tensor& draft_probs, const Tensor& draft_tokens,
                           const Tensor& meta, const Tensor& uniforms, const Tensor& out, const VerifyParams& p) {
  guarded("verify", [&] { return verify_impl(target, draft_probs, draft_tokens, meta, uniforms, out, p); });
}

void VulkanBackend::adjust_logits(const Tensor& logits, const Tensor& adjust) {
  guarded("adjust_logits", [&]() -> Status {
    struct Push { uint32_t l_off, a_off, n, n_rows, cols; };
    if (adjust.rows == 0 || logits.rows == 0) return {};
    if (adjust.dtype != DType::I32 || adjust.cols != 6) return make_error("adjust must be i32 [n, 6]");
    PAGODA_BIND(bl, bind(logits, 4));
    PAGODA_BIND(ba, bind(adjust, 4));
    const Push p{bl.elem, ba.elem, uint32_t(adjust.rows), uint32_t(logits.rows), uint32_t(logits.cols)};
    return run("adjust_logits", {{kSpecLocalSize, elem_group_}}, {bl.binding, ba.binding}, p,
               ceil_div(uint64_t(adjust.rows), elem_group_));
  });
}

void VulkanBackend::filter_probs(const Tensor& logits, const Tensor& probs, const Tensor& params) {
  guarded("filter_probs", [&]() -> Status {
    struct Push { uint32_t l_off, p_off, q_off, n_rows, cols; };
    if (probs.rows == 0 || probs.cols == 0) return {};
    if (logits.rows < probs.rows || logits.cols != probs.cols) return make_error("logits must have probs' shape");
    if (params.dtype != DType::I32 || params.cols != 3 || params.rows < probs.rows)
      return make_error("params must be i32 [n, 3]");
    PAGODA_BIND(bl, bind(logits, 4, probs.bytes()));
    PAGODA_BIND(bp, bind(probs, 4));
    PAGODA_BIND(bq, bind(params, 4, size_t(probs.rows) * 12));
    const Push p{bl.elem, bp.elem, bq.elem, uint32_t(probs.rows), uint32_t(probs.cols)};
    // A wide workgroup: the filter makes up to ~90 passes over the row, and llvmpipe (lavapipe)
    // caps the loop iterations of one invocation at 65535 in total, silently ending the shader
    // there; with row_group_ (16 on lavapipe) a 32,000-token row hit it. 256 invocations keep
    // a 128k-token row's passes under the cap.
    return run("filter_probs", {{kSpecLocalSize, elem_group_}}, {bl.binding, bp.binding, bq.binding}, p,
               uint64_t(probs.rows));
  });
}

}  // namespace pagoda::vk
