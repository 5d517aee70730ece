// Reference kernels: the simplest correct loops, F32 accumulation, one thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "backends/cpu/cpu_ops.h"
#include "core/util/half.h"

namespace pagoda {

namespace ref {

void embed(const HostTensor& table, const HostTensor& ids, const HostTensor& out) {
  for (int64_t i = 0; i < ids.rows; ++i) {
    const int32_t id = ids.i32()[i];
    dequantize_row(table.dtype, table.data + size_t(id) * table.row_stride(), out.f32() + i * out.cols, table.cols);
  }
}

void rms_norm(const HostTensor& x, const HostTensor& w, const HostTensor& out, float eps) {
  rms_norm_rows(x, w, out, eps, 0, x.rows);
}

void rms_norm_rows(const HostTensor& x, const HostTensor& w, const HostTensor& out, float eps, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x.f32() + r * x.cols;
    float* o = out.f32() + r * x.cols;
    float ss = 0;
    for (int64_t i = 0; i < x.cols; ++i) ss += xr[i] * xr[i];
    const float scale = 1.0f / std::sqrt(ss / float(x.cols) + eps);
    for (int64_t i = 0; i < x.cols; ++i) o[i] = xr[i] * scale * w.f32()[i];
  }
}

void matmul(const HostTensor& w, const HostTensor& x, const HostTensor& out) {
  std::vector<float> row(size_t(w.cols));
  for (int64_t o = 0; o < w.rows; ++o) {
    dequantize_row(w.dtype, w.data + size_t(o) * w.row_stride(), row.data(), w.cols);
    for (int64_t n = 0; n < x.rows; ++n) {
      const float* xr = x.f32() + n * x.cols;
      float acc = 0;
      for (int64_t i = 0; i < w.cols; ++i) acc += row[size_t(i)] * xr[i];
      out.f32()[n * out.cols + o] = acc;
    }
  }
}

void rope(const HostTensor& x, const HostTensor& pos, int32_t n_heads, int32_t head_dim, float theta) {
  rope_freqs(x, pos, nullptr, n_heads, head_dim, theta);
}

void rope_table(const int32_t* pos, int64_t rows, const float* factors, int32_t head_dim, float theta, float* cs) {
  // A pair's angle does not depend on the head: computed once per row and pair (pow, cos and sin
  // per head were ~3% of a one-stream decode step at the 110M shape).
  const int32_t half = head_dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const float p = float(pos[r]);
    for (int32_t i = 0; i < head_dim; i += 2) {
      float freq = std::pow(theta, -float(i) / float(head_dim));
      if (factors) freq /= factors[i / 2];
      const float a = p * freq;
      cs[2 * (r * half + i / 2)] = std::cos(a);
      cs[2 * (r * half + i / 2) + 1] = std::sin(a);
    }
  }
}

void rope_rows(const HostTensor& x, const float* cs, int32_t n_heads, int32_t head_dim, int64_t r0, int64_t r1) {
  const int32_t half = head_dim / 2;
  for (int64_t r = r0; r < r1; ++r) {
    float* row = x.f32() + r * x.cols;
    const float* c = cs + 2 * r * half;
    for (int32_t h = 0; h < n_heads; ++h)
      for (int32_t i = 0; i < half; ++i) rotate_pair(row + h * head_dim + 2 * i, c[2 * i], c[2 * i + 1]);
  }
}

void rope_freqs(const HostTensor& x, const HostTensor& pos, const float* factors, int32_t n_heads, int32_t head_dim,
                float theta) {
  std::vector<float> cs(size_t(x.rows) * size_t(head_dim));
  rope_table(pos.i32(), x.rows, factors, head_dim, theta, cs.data());
  rope_rows(x, cs.data(), n_heads, head_dim, 0, x.rows);
}

void silu_mul(const HostTensor& gate, const HostTensor& up, const HostTensor& out) {
  const int64_t n = gate.rows * gate.cols;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate.f32()[i];
    out.f32()[i] = g / (1.0f + std::exp(-g)) * up.f32()[i];
  }
}

// GELU, tanh form (what Gemma's hidden_activation "gelu_pytorch_tanh" computes), evaluated as
// x * sigmoid(2u) = 0.5 x (1 + tanh(u)): the same function without 1 + tanh(u) cancelling to 0 in
// float for very negative x, where the product is tiny but not zero.
void gelu_mul(const HostTensor& gate, const HostTensor& up, const HostTensor& out) {
  const int64_t n = gate.rows * gate.cols;
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate.f32()[i];
    const float u = kSqrt2OverPi * (g + 0.044715f * g * g * g);
    out.f32()[i] = g / (1.0f + std::exp(-2.0f * u)) * up.f32()[i];
  }
}

void scale(const HostTensor& x, const HostTensor& out, float s) {
  const int64_t n = x.rows * x.cols;
  for (int64_t i = 0; i < n; ++i) out.f32()[i] = x.f32()[i] * s;
}

void softcap(const HostTensor& x, const HostTensor& out, float cap) {
  const int64_t n = x.rows * x.cols;
  for (int64_t i = 0; i < n; ++i) out.f32()[i] = cap * std::tanh(x.f32()[i] / cap);
}

void add(const HostTensor& a, const HostTensor& b, const HostTensor& out) {
  const int64_t n = a.rows * a.cols;
  for (int64_t i = 0; i < n; ++i) out.f32()[i] = a.f32()[i] + b.f32()[i];
}

void kv_store(const HostTensor& k, const HostTensor& v, const HostTensor& kc, const HostTensor& vc,
              const HostTensor& slots) {
  for (int64_t i = 0; i < k.rows; ++i) {
    const int32_t s = slots.i32()[i];
    if (s < 0) continue;
    quantize_row(kc.dtype, k.f32() + i * k.cols, kc.data + size_t(s) * kc.row_stride(), k.cols);
    quantize_row(vc.dtype, v.f32() + i * v.cols, vc.data + size_t(s) * vc.row_stride(), v.cols);
  }
}

void paged_attention(const HostTensor& q, const HostTensor& kc, const HostTensor& vc,
                     const HostTensor& seqs, const HostTensor& bt, const HostTensor& out,
                     const AttentionParams& p) {
  const auto* info = reinterpret_cast<const SeqInfo*>(seqs.data);
  const int32_t group = p.n_heads / p.n_kv_heads;
  const int64_t kv_cols = int64_t(p.n_kv_heads) * p.head_dim;
  std::vector<float> scores;
  std::vector<float> krow(static_cast<size_t>(kv_cols)), vrow(static_cast<size_t>(kv_cols));
  for (int32_t s = 0; s < p.n_seqs; ++s) {
    const SeqInfo& si = info[s];
    for (int32_t j = 0; j < si.q_len; ++j) {
      const int32_t pos = si.ctx_len - si.q_len + j;
      const int64_t row = si.q_start + j;
      scores.assign(size_t(pos + 1) * size_t(p.n_heads), 0.0f);
      // Positions before `lo` are outside the sliding window: weight 0, never read.
      const int32_t lo = p.window > 0 ? std::max(0, pos - p.window + 1) : 0;
      for (int32_t t = lo; t <= pos; ++t) {
        const int64_t slot = int64_t(bt.i32()[si.bt_offset + t / p.block_size]) * p.block_size + t % p.block_size;
        dequantize_row(kc.dtype, kc.data + size_t(slot) * kc.row_stride(), krow.data(), kv_cols);
        for (int32_t h = 0; h < p.n_heads; ++h) {
          const float* qh = q.f32() + row * q.cols + h * p.head_dim;
          const float* kh = krow.data() + (h / group) * p.head_dim;
          float dot = 0;
          for (int32_t d = 0; d < p.head_dim; ++d) dot += qh[d] * kh[d];
          float sc = dot * p.scale;
          if (p.softcap > 0) sc = p.softcap * std::tanh(sc / p.softcap);
          scores[size_t(h) * size_t(pos + 1) + size_t(t)] = sc;
        }
      }
      for (int32_t h = 0; h < p.n_heads; ++h) {
        float* sc = scores.data() + size_t(h) * size_t(pos + 1);
        const float mx = *std::max_element(sc + lo, sc + pos + 1);
        float sum = 0;
        for (int32_t t = lo; t <= pos; ++t) { sc[t] = std::exp(sc[t] - mx); sum += sc[t]; }
        for (int32_t t = lo; t <= pos; ++t) sc[t] /= sum;
        float* oh = out.f32() + row * out.cols + h * p.head_dim;
        std::fill(oh, oh + p.head_dim, 0.0f);
      }
      for (int32_t t = lo; t <= pos; ++t) {
        const int64_t slot = int64_t(bt.i32()[si.bt_offset + t / p.block_size]) * p.block_size + t % p.block_size;
        dequantize_row(vc.dtype, vc.data + size_t(slot) * vc.row_stride(), vrow.data(), kv_cols);
        for (int32_t h = 0; h < p.n_heads; ++h) {
          const float w = scores[size_t(h) * size_t(pos + 1) + size_t(t)];
          float* oh = out.f32() + row * out.cols + h * p.head_dim;
          const float* vh = vrow.data() + (h / group) * p.head_dim;
          for (int32_t d = 0; d < p.head_dim; ++d) oh[d] += w * vh[d];
        }
      }
    }
  }
}

void softmax(const HostTensor& x, const HostTensor& out, float temperature) {
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* xr = x.f32() + r * x.cols;
    float* o = out.f32() + r * x.cols;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < x.cols; ++i) mx = std::max(mx, xr[i]);
    // The sum in double: a float running sum over a 50,000-entry vocabulary drifts by ~sqrt(n) ulps
    // (NMSE ~2e-10), more than any backend's tree reduction; the reference must be the exact side.
    double sum = 0;
    for (int64_t i = 0; i < x.cols; ++i) { o[i] = std::exp((xr[i] - mx) / temperature); sum += o[i]; }
    const float total = float(sum);
    for (int64_t i = 0; i < x.cols; ++i) o[i] /= total;
  }
}

void argmax(const HostTensor& x, const HostTensor& out) {
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* xr = x.f32() + r * x.cols;
    int64_t best = 0;
    for (int64_t i = 1; i < x.cols; ++i)
      if (xr[i] > xr[best]) best = i;
    out.i32()[r] = int32_t(best);
  }
}

// Inverse-CDF draw over an unnormalized non-negative row; falls back to the last positive entry
// so rounding at the top of the CDF never returns an index with zero mass.
static int32_t draw(const float* w, int64_t n, float u) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += w[i];
  const double target = double(u) * total;
  double acc = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (w[i] <= 0) continue;
    last = i;
    acc += w[i];
    if (acc > target) return int32_t(i);
  }
  return int32_t(last);
}

void sample_probs(const HostTensor& probs, const HostTensor& u, const HostTensor& out) {
  for (int64_t r = 0; r < probs.rows; ++r)
    out.i32()[r] = draw(probs.f32() + r * probs.cols, probs.cols, u.f32()[r]);
}

void verify(const HostTensor& target, const HostTensor& draft_probs, const HostTensor& draft_tokens,
            const HostTensor& meta, const HostTensor& uniforms, const HostTensor& out,
            const VerifyParams& p) {
  std::vector<float> residual(size_t(p.vocab));
  for (int32_t s = 0; s < p.n_seqs; ++s) {
    const int32_t row0 = meta.i32()[s * 3], drow0 = meta.i32()[s * 3 + 1], k = meta.i32()[s * 3 + 2];
    const int32_t* toks = draft_tokens.i32() + int64_t(s) * draft_tokens.cols;
    const float* u = uniforms.f32() + int64_t(s) * uniforms.cols;
    int32_t accepted = 0, next = -1;
    for (; accepted < k; ++accepted) {
      const float* pt = target.f32() + int64_t(row0 + accepted) * p.vocab;
      const int32_t tok = toks[accepted];
      if (p.greedy) {
        const int32_t best = int32_t(std::max_element(pt, pt + p.vocab) - pt);
        if (best != tok) { next = best; break; }
        continue;
      }
      const float* qd = draft_probs.f32() + int64_t(drow0 + accepted) * p.vocab;
      // Accept with probability min(1, p/q), written without a division.
      if (u[accepted] * qd[tok] < pt[tok]) continue;
      for (int32_t i = 0; i < p.vocab; ++i) residual[size_t(i)] = std::max(0.0f, pt[i] - qd[i]);
      double mass = 0;
      for (float r : residual) mass += r;
      next = mass > 0 ? draw(residual.data(), p.vocab, u[k]) : draw(pt, p.vocab, u[k]);
      break;
    }
    if (accepted == k) {  // every draft accepted: a bonus token from the target's next row
      const float* pt = target.f32() + int64_t(row0 + k) * p.vocab;
      next = p.greedy ? int32_t(std::max_element(pt, pt + p.vocab) - pt) : draw(pt, p.vocab, u[k]);
    }
    out.i32()[s * 2] = accepted;
    out.i32()[s * 2 + 1] = next;
  }
}

void adjust_logits(const HostTensor& logits, const HostTensor& adjust) {
  for (int64_t i = 0; i < adjust.rows; ++i) {
    LogitAdjust a;
    std::memcpy(&a, adjust.data + size_t(i) * sizeof a, sizeof a);
    if (a.row < 0 || a.row >= logits.rows || a.token < 0 || a.token >= logits.cols) continue;
    float& l = logits.f32()[int64_t(a.row) * logits.cols + a.token];
    l = adjust_logit(l, a);
  }
}

uint32_t candidate_key(float logit) {
  if (std::isnan(logit)) return 0;
  uint32_t b = 0;
  if (logit != 0.0f) std::memcpy(&b, &logit, 4);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// The plain statement of the filters: sort the candidates, cut the prefixes, threshold min-p.
void filter_probs(const HostTensor& logits, const HostTensor& probs, const HostTensor& params) {
  const int64_t V = probs.cols;
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::vector<uint32_t> key(static_cast<size_t>(V));
  std::vector<uint8_t> kept(static_cast<size_t>(V));
  for (int64_t r = 0; r < probs.rows; ++r) {
    FilterParams f;
    std::memcpy(&f, params.data + size_t(r) * sizeof f, sizeof f);
    if (!f.active(V)) continue;
    const float* l = logits.f32() + r * logits.cols;
    float* p = probs.f32() + r * V;
    for (int64_t i = 0; i < V; ++i) key[size_t(i)] = candidate_key(l[i]);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
      return key[size_t(a)] > key[size_t(b)] || (key[size_t(a)] == key[size_t(b)] && a < b);
    });
    size_t keep = size_t(V);
    if (f.top_k > 0 && f.top_k < V) keep = size_t(f.top_k);
    if (f.top_p < 1.0f) {
      double mass = 0, acc = 0;
      for (size_t i = 0; i < keep; ++i) mass += p[order[i]];
      const double need = double(f.top_p) * mass;
      for (size_t i = 0; i < keep; ++i)
        if ((acc += p[order[i]]) >= need) {
          keep = i + 1;
          break;
        }
    }
    float mx = 0.0f;
    for (int64_t i = 0; i < V; ++i) mx = p[i] > mx ? p[i] : mx;
    const float thr = f.min_p > 0.0f ? f.min_p * mx : 0.0f;
    std::fill(kept.begin(), kept.end(), uint8_t(0));
    for (size_t i = 0; i < keep; ++i) kept[size_t(order[i])] = 1;
    double sum = 0;
    for (int64_t i = 0; i < V; ++i)
      if (kept[size_t(i)] && p[i] >= thr) sum += p[i];
    if (!(sum > 0)) continue;  // nothing with mass survived (a NaN row): left as it was
    for (int64_t i = 0; i < V; ++i) p[i] = kept[size_t(i)] && p[i] >= thr ? float(double(p[i]) / sum) : 0.0f;
  }
}

}  // namespace ref
}  // namespace pagoda
