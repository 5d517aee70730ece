#include "core/model/model_weights.h"

#include <openssl/evp.h>

#include <memory>
#include <set>

namespace pagoda {

Result<DType> dtype_from_ggml(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return DType::F32;
    case GgmlType::F16: return DType::F16;
    case GgmlType::BF16: return DType::BF16;
    case GgmlType::Q8_0: return DType::Q8_0;
    case GgmlType::Q4_0: return DType::Q4_0;
    case GgmlType::Q4_1: return DType::Q4_1;
    case GgmlType::Q5_0: return DType::Q5_0;
    case GgmlType::Q5_1: return DType::Q5_1;
    case GgmlType::IQ4_NL: return DType::IQ4_NL;
    case GgmlType::Q2_K: return DType::Q2_K;
    case GgmlType::Q3_K: return DType::Q3_K;
    case GgmlType::Q4_K: return DType::Q4_K;
    case GgmlType::Q5_K: return DType::Q5_K;
    case GgmlType::Q6_K: return DType::Q6_K;
    default: break;
  }
  return make_error(std::string("type ") + ggml_type_name(t) + ", which Pagoda does not support");
}

GgmlType ggml_from_dtype(DType t) {
  switch (t) {
    case DType::F16: return GgmlType::F16;
    case DType::BF16: return GgmlType::BF16;
    case DType::Q8_0: return GgmlType::Q8_0;
    case DType::Q4_0: return GgmlType::Q4_0;
    case DType::Q4_1: return GgmlType::Q4_1;
    case DType::Q5_0: return GgmlType::Q5_0;
    case DType::Q5_1: return GgmlType::Q5_1;
    case DType::IQ4_NL: return GgmlType::IQ4_NL;
    case DType::Q2_K: return GgmlType::Q2_K;
    case DType::Q3_K: return GgmlType::Q3_K;
    case DType::Q4_K: return GgmlType::Q4_K;
    case DType::Q5_K: return GgmlType::Q5_K;
    case DType::Q6_K: return GgmlType::Q6_K;
    case DType::I32: return GgmlType::I32;
    default: return GgmlType::F32;
  }
}

Status check_tensor_types(const GgufFile& f) {
  for (const auto& t : f.tensors())
    if (auto dt = dtype_from_ggml(t.type); !dt) return make_error("tensor '" + t.name + "' has " + dt.error());
  return {};
}

namespace {

struct Loader {
  const GgufFile& f;
  Backend& be;
  ModelWeights& w;
  EVP_MD_CTX* sha;
  uint64_t total = 0, done = 0;
  const std::function<void(uint64_t, uint64_t)>& progress;
  std::set<std::string> used;  // tensors the runner consumes; anything else in the file is refused

  Result<Tensor> get(const std::string& name, int64_t rows, int64_t cols) {
    const auto* t = f.find_tensor(name);
    if (!t) return make_error("missing tensor '" + name + "'");
    const int64_t got_cols = int64_t(t->dims[0]);
    const int64_t got_rows = t->dims.size() > 1 ? int64_t(t->dims[1]) : 1;
    if (got_cols != cols || got_rows != rows || t->dims.size() > 2)
      return make_error("tensor '" + name + "' has shape [" + std::to_string(got_cols) + ", " + std::to_string(got_rows) +
                        "], expected [" + std::to_string(cols) + ", " + std::to_string(rows) + "]");
    auto dt = dtype_from_ggml(t->type);
    if (!dt) return make_error("tensor '" + name + "' has " + dt.error());
    if (!be.supports(Op::Matmul, *dt) || !be.supports(Op::Embed, *dt))
      return make_error("tensor '" + name + "' has type " + ggml_type_name(t->type) + ", which the " + be.info().name +
                        " backend does not support (the cpu backend runs every type)");
    used.insert(name);
    auto buf = be.alloc(t->n_bytes);
    if (!buf) return make_error("allocating '" + name + "': " + buf.error());
    Tensor out{buf->get(), 0, *dt, rows, cols};
    be.upload(out, f.tensor_data(*t), t->n_bytes);
    // The digest covers names, types and shapes as well as bytes, so a re-shaped file differs.
    EVP_DigestUpdate(sha, name.data(), name.size());
    const uint32_t meta[3] = {uint32_t(t->type), uint32_t(cols), uint32_t(rows)};
    EVP_DigestUpdate(sha, meta, sizeof(meta));
    EVP_DigestUpdate(sha, f.tensor_data(*t), t->n_bytes);
    w.buffers.push_back(std::move(*buf));
    w.bytes += t->n_bytes;
    done += t->n_bytes;
    if (progress) progress(done, total);
    return out;
  }
};

}  // namespace

Result<ModelWeights> ModelWeights::load(const GgufFile& f, const ModelConfig& c, Backend& be,
                                        const std::function<void(uint64_t, uint64_t)>& progress) {
  ModelWeights w;
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
  Loader ld{f, be, w, sha.get(), 0, 0, progress, {}};
  for (const auto& t : f.tensors()) ld.total += t.n_bytes;

  const int64_t kv_dim = int64_t(c.n_kv_heads) * c.head_dim;
  auto assign = [](Tensor& dst, Result<Tensor> r) -> Status {
    if (!r) return r.take_error();
    dst = *r;
    return {};
  };
  PAGODA_TRY(assign(w.tok_embd, ld.get("token_embd.weight", c.vocab, c.dim)));
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights L;
    PAGODA_TRY(assign(L.attn_norm, ld.get(p + "attn_norm.weight", 1, c.dim)));
    PAGODA_TRY(assign(L.wq, ld.get(p + "attn_q.weight", c.dim, c.dim)));
    PAGODA_TRY(assign(L.wk, ld.get(p + "attn_k.weight", kv_dim, c.dim)));
    PAGODA_TRY(assign(L.wv, ld.get(p + "attn_v.weight", kv_dim, c.dim)));
    PAGODA_TRY(assign(L.wo, ld.get(p + "attn_output.weight", c.dim, c.dim)));
    PAGODA_TRY(assign(L.ffn_norm, ld.get(p + "ffn_norm.weight", 1, c.dim)));
    PAGODA_TRY(assign(L.w_gate, ld.get(p + "ffn_gate.weight", c.ffn_dim, c.dim)));
    PAGODA_TRY(assign(L.w_up, ld.get(p + "ffn_up.weight", c.ffn_dim, c.dim)));
    PAGODA_TRY(assign(L.w_down, ld.get(p + "ffn_down.weight", c.dim, c.ffn_dim)));
    if (L.attn_norm.dtype != DType::F32 || L.ffn_norm.dtype != DType::F32)
      return make_error("norm weights of layer " + std::to_string(l) + " must be F32");
    w.layers.push_back(L);
  }
  PAGODA_TRY(assign(w.output_norm, ld.get("output_norm.weight", 1, c.dim)));
  if (w.output_norm.dtype != DType::F32) return make_error("output_norm.weight must be F32");
  if (c.tied_output) w.output = w.tok_embd;
  else PAGODA_TRY(assign(w.output, ld.get("output.weight", c.vocab, c.dim)));
  // Llama 3's RoPE scaling lives entirely in this tensor: per-pair frequency divisors.
  if (f.find_tensor("rope_freqs.weight")) {
    PAGODA_TRY(assign(w.rope_freqs, ld.get("rope_freqs.weight", 1, c.head_dim / 2)));
    if (w.rope_freqs.dtype != DType::F32) return make_error("rope_freqs.weight must be F32");
    if (!be.supports(Op::RopeFreqs, DType::F32))
      return make_error("rope_freqs.weight (Llama 3 RoPE frequency factors): the " + be.info().name +
                        " backend does not support it yet (the cpu backend applies it)");
  }
  // A tensor the layer loop would not read means the file computes something else: refuse it.
  for (const auto& t : f.tensors())
    if (!ld.used.count(t.name))
      return make_error("tensor '" + t.name + "' is not used by Pagoda's llama runner; the file needs an architecture it does not implement");

  unsigned char md[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(sha.get(), md, &len);
  static const char* kHex = "0123456789abcdef";
  for (unsigned i = 0; i < len; ++i) {
    w.digest += kHex[md[i] >> 4];
    w.digest += kHex[md[i] & 15];
  }
  PAGODA_TRY(be.sync());
  return w;
}

}  // namespace pagoda
