#include "core/speculation/drafter.h"

#include <algorithm>

#include "core/sample/philox.h"
#include "core/sample/sampler.h"

namespace pagoda {

std::vector<int32_t> NgramDrafter::lookup(std::span<const int32_t> toks, int32_t n, int32_t k) {
  const int64_t len = int64_t(toks.size());
  // Longest n first: a longer match predicts better; fall back to shorter ones.
  for (int32_t m = std::min<int64_t>(n, len - 1); m >= 1; --m) {
    const auto tail = toks.subspan(size_t(len - m));
    for (int64_t start = len - m - 1; start >= 0; --start) {
      if (!std::equal(tail.begin(), tail.end(), toks.begin() + start)) continue;
      const int64_t from = start + m;
      const int64_t n_out = std::min<int64_t>(k, len - from);
      if (n_out <= 0) continue;
      return std::vector<int32_t>(toks.begin() + from, toks.begin() + from + n_out);
    }
  }
  return {};
}

Status NgramDrafter::propose(std::span<Sequence* const> seqs, std::span<const int32_t> k, std::vector<DraftProposal>& out) {
  out.assign(seqs.size(), {});
  for (size_t i = 0; i < seqs.size(); ++i) {
    out[i].tokens = lookup(seqs[i]->tokens, n_, k[i]);
    if (Sequence& s = *seqs[i]; s.grammar) {
      // Under a grammar only the prefix it accepts is worth verifying (nothing after an end).
      const auto at = s.grammar->snapshot();
      size_t n = 0;
      while (n < out[i].tokens.size() && !s.grammar->is_finished() && s.grammar->accept_token(*s.vocab, out[i].tokens[n])) ++n;
      s.grammar->restore(at);
      out[i].tokens.resize(n);
    }
    for (int32_t t : out[i].tokens) {
      // A deterministic proposal: q is one-hot, so acceptance is min(1, p(x)).
      std::vector<float> q(size_t(vocab_), 0.0f);
      q[size_t(t)] = 1.0f;
      out[i].q.push_back(std::move(q));
    }
  }
  return {};
}

Result<std::unique_ptr<DraftModel>> DraftModel::create(LoadedModel& draft, Backend& be, const Tokenizer& target_tok,
                                                       uint64_t kv_bytes, int32_t block_size) {
  if (draft.tokenizer->digest() != target_tok.digest())
    return make_error("the draft model's vocabulary differs from the target's (tokenizer digests " +
                      draft.tokenizer->digest().substr(0, 12) + " vs " + target_tok.digest().substr(0, 12) +
                      "); a draft must share the target's tokenizer");
  std::unique_ptr<DraftModel> d(new DraftModel(draft));
  const KvShape shape = kv_shape(draft.config, block_size, DType::F32);
  auto kv = KvCache::create(be, shape, kv_blocks_for_budget(shape, kv_bytes));
  if (!kv) return make_error("draft model: " + kv.error());
  d->kv_ = std::make_unique<KvCache>(std::move(*kv));
  d->runner_ = std::make_unique<ModelRunner>(be, draft.config, draft.weights);
  return d;
}

bool DraftModel::reserve(State& st, int32_t n_tokens) { return kv_->grow(st.table, n_tokens).ok(); }

void DraftModel::accepted(const Sequence& s, int32_t n_valid) {
  auto it = states_.find(s.id);
  if (it != states_.end()) it->second.n_computed = std::min(it->second.n_computed, n_valid);
}

void DraftModel::release(uint64_t id) {
  auto it = states_.find(id);
  if (it == states_.end()) return;
  kv_->release(it->second.table);
  states_.erase(it);
}

Status DraftModel::propose(std::span<Sequence* const> seqs, std::span<const int32_t> k, std::vector<DraftProposal>& out) {
  out.assign(seqs.size(), {});
  const int32_t bs = kv_->block_size(), V = m_.config.vocab;
  // Catch up each sequence's draft KV to its tokens; the last row gives the first draft's logits.
  std::vector<size_t> active;
  ForwardBatch b;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = *seqs[i];
    const int32_t len = int32_t(s.tokens.size());
    if (k[i] <= 0 || len + k[i] >= m_.config.ctx_len) continue;
    State& st = states_[s.id];
    if (!reserve(st, len + k[i])) continue;  // the draft's pool is full: no draft this step
    b.add_sequence(s.tokens.data() + st.n_computed, len - st.n_computed, st.n_computed, st.table, bs, 1);
    active.push_back(i);
  }
  if (active.empty()) return {};
  std::vector<float> logits;
  PAGODA_TRY(runner_->forward(b, *kv_, &logits));
  int32_t kmax = 0;
  for (size_t i : active) kmax = std::max(kmax, k[i]);
  std::vector<int32_t> hist;
  // Grammar-constrained sequences draft under the mask (q is then the masked distribution, as the
  // verifier expects); their matchers walk the drafts and are put back at the end.
  struct Restore {
    std::span<Sequence* const> seqs;
    std::vector<grammar::MatcherSnapshot> at;
    ~Restore() {
      for (size_t i = 0; i < seqs.size(); ++i)
        if (seqs[i]->grammar) seqs[i]->grammar->restore(at[i]);
    }
  } restore{seqs, std::vector<grammar::MatcherSnapshot>(seqs.size())};
  for (size_t i = 0; i < seqs.size(); ++i)
    if (seqs[i]->grammar) restore.at[i] = seqs[i]->grammar->snapshot();
  std::vector<uint32_t> mask;
  std::vector<float> masked;
  for (int32_t j = 0; j < kmax; ++j) {
    ForwardBatch nb;
    std::vector<size_t> next_active;
    for (size_t a = 0; a < active.size(); ++a) {
      const size_t i = active[a];
      Sequence& s = *seqs[i];
      hist.assign(s.tokens.begin(), s.tokens.end());
      hist.insert(hist.end(), out[i].tokens.begin(), out[i].tokens.end());
      std::span<const float> row(logits.data() + a * size_t(V), size_t(V));
      if (s.grammar) {
        mask.assign(std::max(s.vocab->mask_words(), (size_t(V) + 31) / 32), 0u);
        s.grammar->fill_mask(*s.vocab, std::span<uint32_t>(mask.data(), s.vocab->mask_words()));
        if (std::all_of(mask.begin(), mask.end(), [](uint32_t w) { return w == 0; })) continue;  // nothing can follow
        masked.assign(row.begin(), row.end());
        grammar::apply_token_mask(masked, mask);
        row = masked;
      }
      auto q = sampling_distribution(row, hist, s.sampling, size_t(s.generated()) + out[i].tokens.size());
      const int32_t tok = s.sampling.greedy() ? argmax(q)
                                              : draw_from(q, philox_uniform(s.sampling.seed, 1, uint64_t(s.generated() + j)));
      out[i].tokens.push_back(tok);
      out[i].q.push_back(std::move(q));
      State& st = states_[s.id];
      st.n_computed = int32_t(s.tokens.size()) + j;  // KV holds everything before this draft token
      if (s.grammar && (!s.grammar->accept_token(*s.vocab, tok) || s.grammar->is_finished())) continue;
      if (j + 1 < k[i]) {
        nb.add_sequence(&out[i].tokens.back(), 1, st.n_computed, st.table, bs, 1);
        next_active.push_back(i);
      }
    }
    if (next_active.empty()) break;
    PAGODA_TRY(runner_->forward(nb, *kv_, &logits));
    for (size_t i : next_active) states_[seqs[i]->id].n_computed += 1;
    active = std::move(next_active);
  }
  return {};
}

}  // namespace pagoda
