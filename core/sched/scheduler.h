// Scheduler: decides who runs each step. Continuous batching under a per-step token budget:
// every running decode gets its token first (so decodes never starve behind a long prompt), then
// prefill chunks fill the rest. Admission matches the prefix cache and allocates blocks; when
// blocks run out, the lowest-priority, newest running request is preempted (recomputed later),
// at most max_preemptions times per request before it fails.
// The waiting queue is strict priority: higher `priority` first, FIFO within a priority, and a
// preempted request goes back ahead of everything waiting at its priority. Strict means a steady
// stream of higher-priority work can hold lower priorities back indefinitely (no ageing): request
// deadlines bound that wait, and the server caps the priority a caller may ask for.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/kv/kv_cache.h"
#include "core/prefix/prefix_index.h"
#include "core/sched/sequence.h"
#include "core/telemetry/telemetry.h"

namespace pagoda {

struct SchedulerConfig {
  int32_t max_batch_tokens = 512;  // token budget per step
  int32_t max_running = 64;
  bool prefix_caching = true;
  int32_t ctx_len = 0;
  int32_t max_preemptions = 8;       // a request preempted once more than this fails instead
  int32_t tenant_cached_blocks = 0;  // cap on cached blocks charged to one tenant (0 = none)
};

struct ScheduledChunk {
  Sequence* seq;
  int32_t start;     // first position computed this step
  int32_t n_tokens;  // tokens computed this step (including draft tokens)
  bool wants_logits; // the chunk reaches the end of the sequence's tokens
  int32_t n_draft = 0;  // draft tokens verified in this chunk (seq->draft); > 0: a speculative decode
};

// Draft tokens proposed for this step, by sequence id (schedule() may cut or drop them).
using DraftMap = std::unordered_map<uint64_t, std::vector<int32_t>>;

// What the emit stage decided for one planned chunk; postprocess() applies it.
struct ChunkOutcome {
  std::vector<int32_t> tokens;  // generated this step, in order (appended to the sequence)
  int32_t kv_valid = 0;         // positions whose K/V is valid after the step (rejected drafts excluded)
  FinishReason finish = FinishReason::None;  // None: the request goes on
  std::string error = {};
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig cfg, KvCache& kv, PrefixIndex& index, const CacheIdentity& identity,
            Counters& counters, Histograms& hist);

  // Queues a sequence. Admission (context, KV capacity, queue bound) was decided once, when the
  // request was normalized (Engine::submit), the only point where the caller can still be told
  // synchronously (an HTTP status, not a stream error).
  void add(std::unique_ptr<Sequence> seq);
  // Plans one step. Decoding sequences with a proposal in `drafts` verify (a budget- and
  // block-bounded prefix of) it. Sequences that must end (cancelled, past deadline, over the
  // preemption bound) are moved to `finished` with their finish_reason (and error) set.
  std::vector<ScheduledChunk> schedule(SteadyTime now, const DraftMap& drafts,
                                       std::vector<std::unique_ptr<Sequence>>& finished);
  std::vector<ScheduledChunk> schedule(SteadyTime now, std::vector<std::unique_ptr<Sequence>>& finished) {
    return schedule(now, DraftMap{}, finished);
  }
  // After the step: appends each chunk's tokens, keeps K/V for its kv_valid positions (keying
  // newly full blocks, releasing what left a sliding window), clears drafts, and moves sequences
  // that finished to `finished`. `out` holds one outcome per chunk of `plan`.
  void postprocess(const std::vector<ScheduledChunk>& plan, const std::vector<ChunkOutcome>& out,
                   std::vector<std::unique_ptr<Sequence>>& finished);
  // Records `n_computed` cached tokens and keys newly full blocks.
  void commit(Sequence& s, int32_t n_computed);
  // Shrinks a sequence to `n_computed` cached tokens, releasing blocks no longer needed (rejected drafts).
  void truncate(Sequence& s, int32_t n_computed);
  // Ends a running or waiting sequence, releasing its blocks.
  std::unique_ptr<Sequence> finish(Sequence* s);
  // Ensures blocks for `n_tokens` cached tokens; false when the pool cannot provide them.
  bool reserve(Sequence& s, int32_t n_tokens);

  const std::deque<std::unique_ptr<Sequence>>& waiting() const { return waiting_; }
  const std::vector<std::unique_ptr<Sequence>>& running() const { return running_; }
  Sequence* find(uint64_t id);
  bool idle() const { return waiting_.empty() && running_.empty(); }
  const CacheIdentity& identity() const { return identity_; }
  // While the identity is incomplete (the weights digest still being computed, WeightsDigest), no
  // block is keyed: admission matches nothing (the index is empty of this model's blocks anyway)
  // and commits key nothing. set_identity() completes it; blocks still held are keyed at their
  // sequence's next commit.
  void defer_identity() { identity_known_ = false; }
  void set_identity(const CacheIdentity& id) {
    identity_ = id;
    identity_known_ = true;
  }
  bool identity_known() const { return identity_known_; }
  KvCache& kv() { return kv_; }

  // Stage times of the last schedule() call (seconds).
  double hash_s = 0, match_s = 0, allocate_s = 0;

 private:
  bool admit(Sequence& s);
  // Request::prefill_from: 1 = s now shares its source's prompt blocks, 0 = the source is neither
  // running nor a donor (prefill normally), -1 = the running source has not computed its prompt
  // yet (wait).
  int fork_prompt(Sequence& s, int32_t& matched);
  Sequence* running_with(uint64_t id) const;
  bool awaited(uint64_t id) const;  // a waiting request will fork this one's prompt
  void release_donors(bool all);
  void preempt(Sequence& s);
  void enqueue(std::unique_ptr<Sequence> s, bool preempted);
  int32_t group_of(const std::string& scope);
  void release_blocks(Sequence& s);
  Sequence* pick_victim(const Sequence* except);
  void ensure_keys(Sequence& s);

  SchedulerConfig cfg_;
  KvCache& kv_;
  PrefixIndex& index_;
  CacheIdentity identity_;
  bool identity_known_ = true;
  Counters& counters_;
  Histograms& hist_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<std::unique_ptr<Sequence>> failed_;  // over the preemption bound, reported by schedule()
  std::unordered_map<std::string, int32_t> groups_{{"", 0}};  // cache scope -> BlockPool owner group
  // Requests that ended while others still waited to fork their prompt (n choices with max_tokens
  // 1 end in the step that computes the prompt): their blocks, the partial last one included, are
  // held until no waiting request names them, or until reserve() runs out of blocks.
  struct Donor {
    uint64_t id = 0;
    BlockTable table;
    std::vector<int32_t> tokens;
    int32_t n_computed = 0, n_keyed = 0;
    std::vector<BlockKey> keys;
  };
  std::vector<Donor> donors_;
};

}  // namespace pagoda
