// Drafters propose tokens for the target to verify. NgramDrafter looks up the continuation of the
// most recent earlier occurrence of the sequence's last n tokens (prompt lookup); DraftModel runs a
// smaller model with the same vocabulary on its own paged KV. Each proposal carries the draft
// distribution q each token was drawn from, which the verifier needs to stay exact.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/kv/kv_cache.h"
#include "core/model/loaded_model.h"
#include "core/model/model_runner.h"
#include "core/sched/sequence.h"

namespace pagoda {

struct DraftProposal {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> q;  // one distribution per token
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual std::string name() const = 0;
  // Up to k[i] tokens for seqs[i]; an empty proposal means "no draft for this one".
  virtual Status propose(std::span<Sequence* const> seqs, std::span<const int32_t> k, std::vector<DraftProposal>& out) = 0;
  // After verification the first n_valid tokens of s are what the drafter saw (its state may keep them).
  virtual void accepted(const Sequence& s, int32_t n_valid) {}
  virtual void release(uint64_t seq_id) {}
};

class NgramDrafter final : public Drafter {
 public:
  NgramDrafter(int32_t n, int32_t vocab) : n_(n), vocab_(vocab) {}
  std::string name() const override { return "ngram"; }
  Status propose(std::span<Sequence* const> seqs, std::span<const int32_t> k, std::vector<DraftProposal>& out) override;
  // The lookup itself, for tests: continuation of the latest earlier match of the last n tokens.
  static std::vector<int32_t> lookup(std::span<const int32_t> tokens, int32_t n, int32_t k);

 private:
  int32_t n_, vocab_;
};

class DraftModel final : public Drafter {
 public:
  // Refuses a draft whose vocabulary differs from the target's (different tokenizer digest).
  static Result<std::unique_ptr<DraftModel>> create(LoadedModel& draft, Backend& be, const Tokenizer& target_tok,
                                                    uint64_t kv_bytes, int32_t block_size = 16);
  std::string name() const override { return "draft"; }
  Status propose(std::span<Sequence* const> seqs, std::span<const int32_t> k, std::vector<DraftProposal>& out) override;
  void accepted(const Sequence& s, int32_t n_valid) override;
  void release(uint64_t seq_id) override;
  int32_t blocks_in_use() const { return kv_->pool().num_in_use(); }

 private:
  explicit DraftModel(LoadedModel& m) : m_(m) {}
  struct State {
    BlockTable table;
    int32_t n_computed = 0;
  };
  bool reserve(State& st, int32_t n_tokens);

  LoadedModel& m_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<ModelRunner> runner_;
  std::unordered_map<uint64_t, State> states_;
};

}  // namespace pagoda
