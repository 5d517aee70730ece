#include "apps/bench/model_conformance.h"

#include <algorithm>
#include <cmath>

#include "core/engine/engine.h"
#include "core/model/loaded_model.h"
#include "core/sample/sampler.h"

namespace pagoda {
namespace {

struct Side {
  std::unique_ptr<LoadedModel> m;
  std::unique_ptr<KvCache> kv;
  std::unique_ptr<ModelRunner> runner;
};

Result<Side> open_side(const std::string& path, Backend& be, DType kv_dtype, int32_t tokens) {
  Side s;
  auto m = LoadedModel::load(path, be);
  if (!m) return m.take_error();
  s.m = std::move(*m);
  auto kv = KvCache::create(be, kv_shape(s.m->config, 16, kv_dtype), (tokens + 16) / 16 + 1);
  if (!kv) return kv.take_error();
  s.kv = std::make_unique<KvCache>(std::move(*kv));
  s.runner = std::make_unique<ModelRunner>(be, s.m->config, s.m->weights);
  return s;
}

// Logits for every position of `toks` in one prefill (teacher forcing).
Result<std::vector<float>> all_logits(Side& s, const std::vector<int32_t>& toks) {
  BlockTable t;
  for (int32_t i = 0; i < s.kv->pool().num_blocks(); ++i) t.blocks.push_back(*s.kv->pool().allocate());
  ForwardBatch b;
  b.add_sequence(toks.data(), int32_t(toks.size()), 0, t, s.kv->block_size(), 2);
  std::vector<float> logits;
  auto st = s.runner->forward(b, *s.kv, &logits);
  for (int32_t blk : t.blocks) s.kv->pool().release(blk);
  if (!st) return st.take_error();
  return logits;
}

std::vector<double> softmax(const float* x, int32_t n) {
  std::vector<double> p(static_cast<size_t>(n));
  const float mx = *std::max_element(x, x + n);
  double sum = 0;
  for (int32_t i = 0; i < n; ++i) sum += p[size_t(i)] = std::exp(double(x[i] - mx));
  for (auto& v : p) v /= sum;
  return p;
}

}  // namespace

Result<ModelConformance> compare_model(const std::string& path, Backend& reference, Backend& dut, const std::string& prompt,
                                       int32_t n_tokens, DType kv_dtype) {
  auto ref = open_side(path, reference, DType::F32, 0);
  if (!ref) return ref.take_error();
  const int32_t total = int32_t(ref->m->tokenizer->encode(prompt, true).size()) + n_tokens;
  ref = open_side(path, reference, DType::F32, total);
  auto dev = open_side(path, dut, kv_dtype, total);
  if (!ref) return ref.take_error();
  if (!dev) return dev.take_error();
  ModelConformance r;
  r.backend = dut.info().name;
  r.kv_dtype = dtype_name(kv_dtype);
  const auto prompt_ids = ref->m->tokenizer->encode(prompt, true);
  // Free-running greedy through each side's Engine, as a user's request runs: the reference picks
  // on the host, the backend under test on its device where it has the ops (argmax after the
  // logits stayed on the device), so the device decode path is checked too.
  auto greedy = [&](Side& side, Backend& be, DType kv, bool on_device) -> Result<std::vector<int32_t>> {
    EngineConfig ec;
    ec.kv_dtype = kv;
    ec.num_blocks = (total + 1 + ec.block_size - 1) / ec.block_size + 1;
    ec.prefix_caching = false;
    ec.device_sampling = on_device && be.supports(Op::Argmax, DType::F32) && be.supports(Op::Softmax, DType::F32) &&
                                 be.supports(Op::SampleProbs, DType::F32) && be.supports(Op::Verify, DType::F32)
                             ? "on"
                             : "off";
    auto e = Engine::create(*side.m, be, ec);
    if (!e) return e.take_error();
    Request req;
    req.prompt_tokens = prompt_ids;
    req.max_tokens = n_tokens;
    req.sampling.temperature = 0;
    auto c = complete(**e, req);
    if (!c) return c.take_error();
    // What generation returns: the tokens before an end-of-sequence that stopped it.
    std::vector<int32_t> t = c->tokens;
    if (c->reason == FinishReason::Eos && !t.empty()) t.pop_back();
    return t;
  };
  auto ga = greedy(*ref, reference, DType::F32, false);
  if (!ga) return ga.take_error();
  auto gb = greedy(*dev, dut, kv_dtype, true);
  if (!gb) return gb.take_error();
  const std::vector<int32_t>& a = *ga;
  const std::vector<int32_t>& b = *gb;
  r.greedy_tokens = int32_t(a.size());
  r.greedy_identical = a == b;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    if (a[i] != b[i]) { r.first_divergence = int32_t(i); break; }
  if (r.first_divergence < 0 && a.size() != b.size()) r.first_divergence = int32_t(std::min(a.size(), b.size()));
  // Teacher-forced on the reference's tokens: per-position agreement and KL.
  std::vector<int32_t> seq = prompt_ids;
  seq.insert(seq.end(), a.begin(), a.end());
  auto la = all_logits(*ref, seq), lb = all_logits(*dev, seq);
  if (!la) return la.take_error();
  if (!lb) return lb.take_error();
  const int32_t V = ref->m->config.vocab;
  r.positions = int32_t(seq.size());
  int32_t agree = 0;
  double kl_sum = 0;
  for (int32_t i = 0; i < r.positions; ++i) {
    const float* x = la->data() + size_t(i) * size_t(V);
    const float* y = lb->data() + size_t(i) * size_t(V);
    agree += argmax(std::span<const float>(x, size_t(V))) == argmax(std::span<const float>(y, size_t(V)));
    const auto p = softmax(x, V), q = softmax(y, V);
    double kl = 0;
    for (int32_t v = 0; v < V; ++v)
      if (p[size_t(v)] > 0) kl += p[size_t(v)] * std::log(p[size_t(v)] / std::max(q[size_t(v)], 1e-300));
    kl_sum += kl;
    r.max_kl = std::max(r.max_kl, kl);
  }
  r.top1_agreement = double(agree) / r.positions;
  r.mean_kl = kl_sum / r.positions;
  return r;
}

}  // namespace pagoda
