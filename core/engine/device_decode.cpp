// Device-resident decode (see device_decode.h), and the engine's two hooks into it: the forward
// pass that leaves logits on the device, and the emission of a chunk the device decided.
#include "core/engine/device_decode.h"

#include <algorithm>
#include <chrono>

#include "core/engine/engine.h"
#include "core/sample/philox.h"
#include "core/sample/sampler.h"
#include "core/speculation/verify.h"

namespace pagoda {

Result<bool> resolve_device_sampling(const std::string& mode, const BackendInfo& backend) {
  if (mode == "on") return true;
  if (mode == "off") return false;
  if (mode == "auto") return backend.is_gpu;
  return make_error("device sampling must be auto, on or off (got '" + mode + "')");
}

bool device_samplable(const Sequence& s, int32_t vocab, bool adjust_ops, bool filter_ops) {
  const SamplingParams& p = s.sampling;
  if (s.grammar || s.logprobs >= 0) return false;
  if (has_penalties(p) && !adjust_ops) return false;
  return filter_ops || !device_filters(p).active(vocab);
}

FilterParams device_filters(const SamplingParams& p) {
  if (p.greedy()) return FilterParams{};
  return FilterParams{p.top_k, p.top_p, p.min_p};
}

Result<Tensor> DeviceDecoder::scratch(BufferPtr& owner, size_t& cap, DType t, int64_t rows, int64_t cols) {
  const size_t need = row_bytes(t, cols) * size_t(std::max<int64_t>(rows, 1));
  if (need > cap) {
    PAGODA_TRY(be_.sync());  // nothing enqueued may still read the buffer being replaced
    owner.reset();
    const size_t bytes = std::max(need, cap * 2);
    auto b = be_.alloc(bytes);
    if (!b) return make_error("device sampling scratch: " + b.error());
    owner = std::move(*b);
    cap = bytes;
  }
  return Tensor{owner.get(), 0, t, rows, cols};
}

bool DeviceDecoder::build_row_params(const std::vector<ScheduledChunk>& plan, const std::vector<int32_t>& first_row,
                                     int64_t rows) {
  adjust_.clear();
  filters_.assign(size_t(rows), FilterParams{});
  bool any_filter = false;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (!decisions_[i].chosen) continue;
    const ScheduledChunk& c = plan[i];
    const Sequence& s = *c.seq;
    const int32_t n = c.n_draft > 0 ? c.n_draft + 1 : 1;
    if (has_penalties(s.sampling)) {
      hist_.assign(s.tokens.begin(), s.tokens.end());
      for (int32_t j = 0; j < n; ++j) {
        append_logit_adjustments(hist_, size_t(s.generated() + j), s.sampling, vocab_, first_row[i] + j, adjust_);
        if (j < c.n_draft) hist_.push_back(s.draft[size_t(j)]);
      }
    }
    const FilterParams f = device_filters(s.sampling);
    if (!f.active(vocab_)) continue;
    any_filter = true;
    for (int32_t j = 0; j < n; ++j) filters_[size_t(first_row[i] + j)] = f;
  }
  return any_filter;
}

Status DeviceDecoder::run(const std::vector<ScheduledChunk>& plan, const std::vector<int32_t>& first_row,
                          const Tensor& logits, const std::unordered_map<uint64_t, DraftProposal>& proposals,
                          std::vector<float>& host_logits) {
  const int64_t nl = logits.rows, V = vocab_;
  decisions_.assign(plan.size(), DeviceDecision{});
  host_logits.resize(size_t(nl) * size_t(V));
  if (nl == 0) return be_.sync();

  // Sort the chunks: greedy or sampled, plain or verified, or left to the host.
  std::vector<size_t> argmax_c, sample_c, vgreedy_c, vsample_c;
  std::vector<std::pair<int64_t, int64_t>> host_rows;  // [first, end) ranges for the host
  int32_t max_k = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (first_row[i] < 0) continue;
    const ScheduledChunk& c = plan[i];
    const Sequence& s = *c.seq;
    const int64_t rows = c.n_draft > 0 ? c.n_draft + 1 : 1;
    bool device = s.max_tokens != 0 && device_samplable(s, vocab_, adjust_ops_, filter_ops_);
    if (device && c.n_draft > 0 && !s.sampling.greedy()) {
      const auto it = proposals.find(s.id);
      device = it != proposals.end() && it->second.q.size() >= size_t(c.n_draft);
    }
    if (!device) {
      if (!host_rows.empty() && host_rows.back().second == first_row[i]) host_rows.back().second += rows;
      else host_rows.emplace_back(first_row[i], first_row[i] + rows);
      continue;
    }
    decisions_[i].chosen = true;
    if (c.n_draft > 0) {
      max_k = std::max(max_k, c.n_draft);
      (s.sampling.greedy() ? vgreedy_c : vsample_c).push_back(i);
    } else {
      (s.sampling.greedy() ? argmax_c : sample_c).push_back(i);
    }
  }

  const int64_t ng = int64_t(vgreedy_c.size()), ns = int64_t(vsample_c.size());
  const bool any_device = !argmax_c.empty() || !sample_c.empty() || ng + ns > 0;
  // Results, one I32 buffer downloaded at once: [argmax ids: nl | sampled ids: nl | verify out: 2 per sequence].
  const int64_t res_rows = 2 * nl + 2 * (ng + ns);
  Tensor res;
  if (any_device) {
    auto r = scratch(b_res_, cap_res_, DType::I32, res_rows, 1);
    if (!r) return r.take_error();
    res = *r;
  }
  Tensor probs;
  if (!sample_c.empty() || ns > 0) {
    auto r = scratch(b_probs_, cap_probs_, DType::F32, nl, V);
    if (!r) return r.take_error();
    probs = *r;
  }

  // Penalties and logit_bias first, in place: argmax, the softmax and the filters' candidate order
  // all read the adjusted logits, as the host sampler's do.
  adjust_.clear();  // a step without device rows must not replay the last step's list
  const bool any_filter = any_device && build_row_params(plan, first_row, nl);
  if (!adjust_.empty()) {
    auto at = scratch(b_adj_, cap_adj_, DType::I32, int64_t(adjust_.size()), 6);
    if (!at) return at.take_error();
    be_.upload(*at, adjust_.data(), adjust_.size() * sizeof(LogitAdjust));
    be_.adjust_logits(logits, *at);
  }

  if (!argmax_c.empty()) be_.argmax(logits, res.row_slice(0, nl));

  // Softmax of every sampled row: one per run of adjacent rows at the same temperature (usually
  // the whole batch), and one per verified chunk.
  std::vector<float> u;
  if (!sample_c.empty()) {
    u.assign(size_t(nl), 0.0f);
    int64_t run0 = -1, run1 = -1;
    float run_t = 0;
    auto flush = [&] {
      if (run0 >= 0) be_.softmax(logits.row_slice(run0, run1 - run0), probs.row_slice(run0, run1 - run0), run_t);
    };
    for (size_t i : sample_c) {
      const Sequence& s = *plan[i].seq;
      const int64_t r = first_row[i];
      if (r != run1 || s.sampling.temperature != run_t) {
        flush();
        run0 = r;
        run_t = s.sampling.temperature;
      }
      run1 = r + 1;
      // The uniform the host sampler draws token number generated() with (sample_token).
      u[size_t(r)] = philox_uniform(s.sampling.seed, 0, uint64_t(s.generated()));
    }
    flush();
  }
  for (size_t i : vsample_c) {
    const Sequence& s = *plan[i].seq;
    be_.softmax(logits.row_slice(first_row[i], plan[i].n_draft + 1), probs.row_slice(first_row[i], plan[i].n_draft + 1),
                s.sampling.temperature);
  }
  // Top-k/top-p/min-p over all rows at once; rows of other chunks have inactive parameters.
  if (any_filter) {
    auto ft = scratch(b_filt_, cap_filt_, DType::I32, nl, 3);
    if (!ft) return ft.take_error();
    be_.upload(*ft, filters_.data(), filters_.size() * sizeof(FilterParams));
    be_.filter_probs(logits, probs, *ft);
  }

  if (!sample_c.empty()) {
    auto ut = scratch(b_u_, cap_u_, DType::F32, nl, 1);
    if (!ut) return ut.take_error();
    be_.upload(*ut, u.data(), u.size() * 4);
    // Rows of other chunks are drawn from too (one dispatch); their ids are never read.
    be_.sample_probs(probs.row_slice(0, nl), *ut, res.row_slice(nl, nl));
  }

  if (ng + ns > 0) {
    const int64_t n = ng + ns;
    std::vector<int32_t> dtok(size_t(n * max_k), 0), meta(size_t(n * 3), 0);
    std::vector<float> uni(size_t(n * (max_k + 1)), 0.0f), q;
    int64_t j = 0, qrows = 0;
    for (const auto* group : {&vgreedy_c, &vsample_c}) {
      for (size_t i : *group) {
        const ScheduledChunk& c = plan[i];
        const Sequence& s = *c.seq;
        const int32_t k = c.n_draft;
        std::copy(s.draft.begin(), s.draft.begin() + k, dtok.begin() + j * max_k);
        meta[size_t(j * 3)] = first_row[i];
        meta[size_t(j * 3 + 2)] = k;
        if (!s.sampling.greedy()) {
          meta[size_t(j * 3 + 1)] = int32_t(qrows);
          const DraftProposal& prop = proposals.at(s.id);
          for (int32_t t = 0; t < k; ++t) q.insert(q.end(), prop.q[size_t(t)].begin(), prop.q[size_t(t)].end());
          qrows += k;
          // The uniforms the host verifier uses (verify_chunk): one per acceptance test, then the final draw.
          const uint64_t g = uint64_t(s.generated());
          float* uj = uni.data() + j * (max_k + 1);
          for (int32_t t = 0; t < k; ++t) uj[t] = philox_uniform(s.sampling.seed, 2, g + uint64_t(t));
          uj[k] = philox_uniform(s.sampling.seed, 3, g);
        }
        decisions_[i].k = k;
        ++j;
      }
    }
    auto dt = scratch(b_dtok_, cap_dtok_, DType::I32, n, max_k);
    auto mt = scratch(b_meta_, cap_meta_, DType::I32, n, 3);
    auto ut = scratch(b_vu_, cap_vu_, DType::F32, n, max_k + 1);
    if (!dt) return dt.take_error();
    if (!mt) return mt.take_error();
    if (!ut) return ut.take_error();
    be_.upload(*dt, dtok.data(), dtok.size() * 4);
    be_.upload(*mt, meta.data(), meta.size() * 4);
    be_.upload(*ut, uni.data(), uni.size() * 4);
    Tensor out = res.row_slice(2 * nl, 2 * n);
    out.rows = n;
    out.cols = 2;
    VerifyParams vp;
    vp.vocab = vocab_;
    vp.max_k = max_k;
    if (ng > 0) {
      vp.n_seqs = int32_t(ng);
      vp.greedy = true;
      // Greedy verification reads only the target logits; the draft rows are never touched.
      be_.verify(logits, logits, dt->row_slice(0, ng), mt->row_slice(0, ng), ut->row_slice(0, ng), out.row_slice(0, ng), vp);
    }
    if (ns > 0) {
      auto qt = scratch(b_q_, cap_q_, DType::F32, qrows, V);
      if (!qt) return qt.take_error();
      be_.upload(*qt, q.data(), q.size() * 4);
      vp.n_seqs = int32_t(ns);
      vp.greedy = false;
      be_.verify(probs, qt->row_slice(0, qrows), dt->row_slice(ng, ns), mt->row_slice(ng, ns), ut->row_slice(ng, ns),
                 out.row_slice(ng, ns), vp);
    }
  }

  // Downloads: the chosen ids (a few bytes per sequence), and the host's rows.
  if (any_device) {
    std::vector<int32_t> ids(static_cast<size_t>(res_rows));
    be_.download(res, ids.data(), ids.size() * 4);
    for (size_t i : argmax_c) decisions_[i].token = ids[size_t(first_row[i])];
    for (size_t i : sample_c) decisions_[i].token = ids[size_t(nl + first_row[i])];
    int64_t j = 0;
    for (const auto* group : {&vgreedy_c, &vsample_c}) {
      for (size_t i : *group) {
        decisions_[i].accepted = ids[size_t(2 * nl + 2 * j)];
        decisions_[i].token = ids[size_t(2 * nl + 2 * j + 1)];
        ++j;
      }
    }
  }
  for (const auto& [r0, r1] : host_rows)
    be_.download(logits.row_slice(r0, r1 - r0), host_logits.data() + size_t(r0) * size_t(V), size_t((r1 - r0) * V) * 4);
  return be_.sync();
}

// ---- the engine's side ----

Status Engine::run_forward_device(const ForwardBatch& b, const std::vector<ScheduledChunk>& plan,
                                  const std::vector<int32_t>& first_row) {
  try {
    auto t = runner_->forward_device(b, *kv_);
    if (!t) return t.take_error();
    return device_->run(plan, first_row, *t, proposals_, logits_);
  } catch (const std::exception& ex) {
    return make_error(std::string("backend exception: ") + ex.what());
  }
}

ChunkOutcome Engine::emit_device_chunk(const ScheduledChunk& c, const DeviceDecision& d, SteadyTime now, SpecTally& tally) {
  Sequence& s = *c.seq;
  if (c.n_draft > 0) {
    tally.any = true;
    ChunkOutcome o = finish_verify(s, d.k, VerifyOutcome{d.accepted, d.token}, nullptr, now, tally,
                                   std::chrono::steady_clock::now());
    counters_.device_sampled_tokens += o.tokens.size();
    return o;
  }
  ChunkOutcome o;
  o.kv_valid = c.start + c.n_tokens;
  const int32_t nth = s.generated() + 1;
  ++counters_.device_sampled_tokens;
  emit_token(s, d.token, nth, now);
  o.tokens.push_back(d.token);
  o.finish = stop_reason(s, d.token, nth, int32_t(s.tokens.size()) + 1);
  return o;
}

}  // namespace pagoda
