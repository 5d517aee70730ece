#include "core/model/model_runner.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace pagoda {

KvShape kv_shape(const ModelConfig& c, int32_t block_size, DType dtype) {
  KvShape s;
  s.n_layers = c.n_layers;
  s.n_kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim;
  s.dtype = dtype;
  s.block_size = block_size;
  s.window = c.desc.all_layers_windowed() ? c.desc.window : 0;
  return s;
}

void ForwardBatch::add_sequence(const int32_t* toks, int32_t n, int32_t start, const BlockTable& table,
                                int32_t block_size, int logits) {
  SeqInfo si;
  si.q_start = n_tokens();
  si.q_len = n;
  si.ctx_len = start + n;
  si.bt_offset = int32_t(block_tables.size());
  const int32_t n_blocks = (si.ctx_len + block_size - 1) / block_size;
  block_tables.insert(block_tables.end(), table.blocks.begin(), table.blocks.begin() + n_blocks);
  for (int32_t i = 0; i < n; ++i) {
    tokens.push_back(toks[i]);
    positions.push_back(start + i);
    slots.push_back(table.slot(start + i, block_size));
    if (logits == 2 || (logits == 1 && i == n - 1)) logit_rows.push_back(si.q_start + i);
  }
  seqs.push_back(si);
  max_ctx_len = std::max(max_ctx_len, si.ctx_len);
}

Result<Tensor> ModelRunner::buffer(BufferPtr& owner, DType t, int64_t rows, int64_t cols) {
  owner.reset();
  auto b = be_.alloc(row_bytes(t, cols) * size_t(std::max<int64_t>(rows, 1)));
  if (!b) return make_error("allocating scratch: " + b.error());
  owner = std::move(*b);
  return Tensor{owner.get(), 0, t, rows, cols};
}

Status ModelRunner::ensure_scratch(const ForwardBatch& b) {
  const int64_t n = b.n_tokens(), nl = int64_t(b.logit_rows.size());
  const int64_t ns = int64_t(b.seqs.size()), nbt = int64_t(b.block_tables.size());
  if (n <= cap_tokens_ && nl <= cap_logits_ && ns <= cap_seqs_ && nbt <= cap_bt_) return {};
  PAGODA_TRY(be_.sync());  // nothing may still read the buffers we replace
  // Grow geometrically so a slowly growing batch does not reallocate every step.
  cap_tokens_ = std::max(n, cap_tokens_ * 2);
  cap_logits_ = std::max(nl, cap_logits_ * 2);
  cap_seqs_ = std::max(ns, cap_seqs_ * 2);
  cap_bt_ = std::max(nbt, cap_bt_ * 2);
  const int64_t kv_dim = cfg_.kv_dim(), q_dim = cfg_.q_dim();
  const bool bias = cfg_.desc.qkv_bias;
  struct Want { BufferPtr* owner; Tensor* t; DType dt; int64_t rows, cols; };
  const Want wants[] = {
      {&b_x_, &x_, DType::F32, cap_tokens_, cfg_.dim},       {&b_xb_, &xb_, DType::F32, cap_tokens_, cfg_.dim},
      {&b_q_, &q_, DType::F32, cap_tokens_, q_dim},          {&b_k_, &k_, DType::F32, cap_tokens_, kv_dim},
      {&b_v_, &v_, DType::F32, cap_tokens_, kv_dim},         {&b_att_, &att_, DType::F32, cap_tokens_, q_dim},
      {&b_bias_, &bias_, DType::F32, bias ? cap_tokens_ : 1, bias ? q_dim : 1},
      {&b_zeros_, &zeros_, DType::I32, cap_tokens_, 1},
      {&b_hb_, &hb_, DType::F32, cap_tokens_, cfg_.ffn_dim}, {&b_hb2_, &hb2_, DType::F32, cap_tokens_, cfg_.ffn_dim},
      {&b_xl_, &xl_, DType::F32, cap_logits_, cfg_.dim},     {&b_logits_, &logits_, DType::F32, cap_logits_, cfg_.vocab},
      {&b_ids_, &ids_, DType::I32, cap_tokens_, 1},          {&b_pos_, &pos_, DType::I32, cap_tokens_, 1},
      {&b_slots_, &slots_, DType::I32, cap_tokens_, 1},      {&b_seqs_, &seqs_, DType::I32, cap_seqs_, 4},
      {&b_bt_, &bt_, DType::I32, cap_bt_, 1},                {&b_lrows_, &lrows_, DType::I32, cap_logits_, 1},
  };
  for (const auto& w : wants) {
    auto t = buffer(*w.owner, w.dt, w.rows, w.cols);
    if (!t) return t.take_error();
    *w.t = *t;
  }
  const std::vector<int32_t> zeros(size_t(cap_tokens_), 0);
  be_.upload(zeros_, zeros.data(), zeros.size() * 4);
  return {};
}

void ModelRunner::add_bias(const Tensor& x, const Tensor& bias) {
  const Tensor tmp{bias_.buf, 0, DType::F32, x.rows, x.cols};
  be_.embed(bias, zeros_.row_slice(0, x.rows), tmp);
  be_.add(x, tmp, x);
}

// One transformer block, each step one backend op named as in the paper; the description says
// which optional steps the block has.
void ModelRunner::layer(int32_t l, const ForwardBatch& b, KvCache& kv, const AttentionParams& ap) {
  const LayerWeights& L = w_.layers[size_t(l)];
  const ArchDesc& d = cfg_.desc;
  const int64_t n = b.n_tokens();
  const Tensor x = x_.row_slice(0, n), xb = xb_.row_slice(0, n), q = q_.row_slice(0, n);
  const Tensor k = k_.row_slice(0, n), v = v_.row_slice(0, n), att = att_.row_slice(0, n);
  const Tensor hb = hb_.row_slice(0, n), hb2 = hb2_.row_slice(0, n);
  const Tensor pos = pos_.row_slice(0, n), slots = slots_.row_slice(0, n);
  const Tensor seqs = seqs_.row_slice(0, int64_t(b.seqs.size()));
  const Tensor bt = bt_.row_slice(0, int64_t(b.block_tables.size()));

  // Attention: x += [post_norm] Wo · attention(rope(Wq·norm(x) [+bq]), rope(Wk·norm(x) [+bk]), Wv·norm(x) [+bv])
  be_.rms_norm(x, L.attn_norm, xb, cfg_.rms_eps);
  const std::array<Tensor, 3> qkv_w{L.wq, L.wk, L.wv}, qkv{q, k, v};
  be_.matmul_many(xb, qkv_w.data(), qkv.data(), qkv.size());
  if (d.qkv_bias) {
    add_bias(q, L.bq);
    add_bias(k, L.bk);
    add_bias(v, L.bv);
  }
  if (d.qk_norm) {  // RMSNorm of every head on its own: the rows viewed as [n * heads, head_dim]
    const Tensor qh{q.buf, q.offset, DType::F32, n * cfg_.n_heads, cfg_.head_dim};
    const Tensor kh{k.buf, k.offset, DType::F32, n * cfg_.n_kv_heads, cfg_.head_dim};
    be_.rms_norm(qh, L.q_norm, qh, cfg_.rms_eps);
    be_.rms_norm(kh, L.k_norm, kh, cfg_.rms_eps);
  }
  // NEOX pairing needs no op of its own: the loader permuted Wq/Wk rows into NORM order. Local
  // layers with a RoPE base of their own (Gemma 3) take neither the file's base nor its scaling.
  const bool local_rope = d.layer_local_rope(l);
  const float theta = local_rope ? d.local_rope_base : cfg_.rope_theta;
  if (w_.rope_freqs.buf && !local_rope) {  // per-pair frequency divisors (rope_freqs, LongRoPE, YaRN, linear)
    be_.rope_freqs(q, pos, w_.rope_freqs, cfg_.n_heads, cfg_.head_dim, theta);
    be_.rope_freqs(k, pos, w_.rope_freqs, cfg_.n_kv_heads, cfg_.head_dim, theta);
  } else {
    be_.rope(q, pos, cfg_.n_heads, cfg_.head_dim, theta);
    be_.rope(k, pos, cfg_.n_kv_heads, cfg_.head_dim, theta);
  }
  be_.kv_store(k, v, kv.k(l), kv.v(l), slots);
  AttentionParams lp = ap;
  lp.window = d.layer_windowed(l) ? d.window : 0;
  lp.softcap = d.attn_softcap;
  // The scaling's magnitude multiplies q and k (cos and sin are scaled), so scores by its square.
  if (!local_rope) lp.scale *= cfg_.rope_scaling.magnitude * cfg_.rope_scaling.magnitude;
  be_.paged_attention(q, kv.k(l), kv.v(l), seqs, bt, att, lp);
  be_.matmul(L.wo, att, xb);
  if (d.post_norms) be_.rms_norm(xb, L.post_attn_norm, xb, cfg_.rms_eps);
  be_.add(x, xb, x);

  // Gated feed-forward: x += [post_norm] W2 · (act(W1·norm(x)) * W3·norm(x)), act = SiLU or GELU(tanh)
  be_.rms_norm(x, L.ffn_norm, xb, cfg_.rms_eps);
  const std::array<Tensor, 2> gate_up_w{L.w_gate, L.w_up}, gate_up{hb, hb2};
  be_.matmul_many(xb, gate_up_w.data(), gate_up.data(), gate_up.size());
  if (d.activation == FfnActivation::GeluTanh) be_.gelu_mul(hb, hb2, hb);
  else be_.silu_mul(hb, hb2, hb);
  be_.matmul(L.w_down, hb, xb);
  if (d.post_norms) be_.rms_norm(xb, L.post_ffn_norm, xb, cfg_.rms_eps);
  be_.add(x, xb, x);
}

Result<Tensor> ModelRunner::forward_device(const ForwardBatch& b, KvCache& kv) {
  const int64_t n = b.n_tokens(), nl = int64_t(b.logit_rows.size());
  if (n == 0) return make_error("empty batch");
  PAGODA_TRY(ensure_scratch(b));
  be_.upload(ids_, b.tokens.data(), size_t(n) * 4);
  be_.upload(pos_, b.positions.data(), size_t(n) * 4);
  be_.upload(slots_, b.slots.data(), size_t(n) * 4);
  be_.upload(seqs_, b.seqs.data(), b.seqs.size() * sizeof(SeqInfo));
  be_.upload(bt_, b.block_tables.data(), b.block_tables.size() * 4);
  if (nl > 0) be_.upload(lrows_, b.logit_rows.data(), size_t(nl) * 4);

  AttentionParams ap;
  ap.n_seqs = int32_t(b.seqs.size());
  ap.n_heads = cfg_.n_heads;
  ap.n_kv_heads = cfg_.n_kv_heads;
  ap.head_dim = cfg_.head_dim;
  ap.block_size = kv.block_size();
  ap.max_ctx_len = b.max_ctx_len;
  ap.scale = cfg_.desc.query_scale > 0 ? cfg_.desc.query_scale : 1.0f / std::sqrt(float(cfg_.head_dim));

  const Tensor x = x_.row_slice(0, n);
  be_.embed(w_.tok_embd, ids_.row_slice(0, n), x);
  if (cfg_.desc.embed_scale_sqrt_dim) be_.scale(x, x, cfg_.desc.embed_scale);
  for (int32_t l = 0; l < cfg_.n_layers; ++l) layer(l, b, kv, ap);
  if (nl == 0) return Tensor{};
  // Only the rows that want logits go through the (vocab-sized) output projection; the gather is
  // an embedding lookup with the activations as the table.
  const Tensor xl = xl_.row_slice(0, nl), logits = logits_.row_slice(0, nl);
  be_.embed(x, lrows_.row_slice(0, nl), xl);
  be_.rms_norm(xl, w_.output_norm, xl, cfg_.rms_eps);
  be_.matmul(w_.output, xl, logits);
  if (cfg_.desc.final_softcap > 0) be_.softcap(logits, logits, cfg_.desc.final_softcap);
  return logits;
}

Status ModelRunner::forward(const ForwardBatch& b, KvCache& kv, std::vector<float>* logits) {
  auto t = forward_device(b, kv);
  if (!t) return t.take_error();
  if (logits) {
    logits->resize(size_t(t->rows) * size_t(cfg_.vocab));
    if (t->rows > 0) be_.download(*t, logits->data(), logits->size() * 4);
  }
  return be_.sync();
}

}  // namespace pagoda
