// Device-resident decode: after the forward pass the logits stay on the device and every choice is
// a backend op: penalties and logit_bias (adjust_logits, with the lists the host sampler itself
// applies, so greedy ids are the host's bit for bit), greedy picks (argmax), draws (softmax, then
// top-k/top-p/min-p by filter_probs, then sample_probs with the host sampler's Philox uniforms)
// and speculative verification (verify, on the same filtered distributions). Only token ids and
// acceptance counts are downloaded, plus a few bytes of per-row parameters uploaded.
// Two things stay on the host, with the sequence's logits rows downloaded:
//  - a grammar: its mask comes from walking the matcher over the vocabulary trie at each position
//    (and, under speculation, over every draft in turn), host-side state that changes token by
//    token; uploading a vocabulary-sized mask per row would cost what downloading the row does;
//  - logprobs: the client wants values of the raw row (log-softmax, and the top-n tokens), so the
//    row has to come back anyway.
// A backend without adjust_logits/filter_probs keeps such sequences on the host too. Both kinds can
// share one step.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"
#include "core/sched/scheduler.h"
#include "core/speculation/drafter.h"
#include "core/util/result.h"

namespace pagoda {

// EngineConfig::device_sampling: "on", "off" or "auto": on where the backend's device is a GPU
// (BackendInfo::is_gpu), whose logits would otherwise cross to the host every step; off for a
// device that computes in host memory (cpu, cpu-ref, a CPU Vulkan driver such as lavapipe), where
// nothing is saved and the host sampler's sort-free passes beat the device ops' bisection
// (docs/perf.md, "Device-side filters and penalties").
Result<bool> resolve_device_sampling(const std::string& mode, const BackendInfo& backend);

// Whether `s`'s next token can be chosen by the device ops: no grammar and no logprobs; penalties
// or logit_bias only with `adjust_ops` (the backend has adjust_logits), top-k/top-p/min-p only
// with `filter_ops` (it has filter_probs).
bool device_samplable(const Sequence& s, int32_t vocab, bool adjust_ops = true, bool filter_ops = true);

// The filter_probs parameters of a sampling setting (inactive under greedy).
FilterParams device_filters(const SamplingParams& p);

// What the device decided for one planned chunk (chosen = false: the host decides, from its rows).
struct DeviceDecision {
  bool chosen = false;
  int32_t token = -1;    // the sampled token, or verification's correction/bonus token
  int32_t accepted = 0;  // verification: leading drafts kept
  int32_t k = 0;         // verification: drafts verified
};

class DeviceDecoder {
 public:
  DeviceDecoder(Backend& be, int32_t vocab)
      : be_(be), vocab_(vocab), adjust_ops_(be.supports(Op::AdjustLogits, DType::F32)),
        filter_ops_(be.supports(Op::FilterProbs, DType::F32)) {}

  // `logits`: the step's logits rows on the device (row first_row[i] onwards for chunk i). Runs the
  // device ops for every eligible chunk, downloads the chosen ids, and downloads the rows of every
  // other chunk into host_logits (sized rows x vocab; rows of device-decided chunks are left as they
  // were). decisions()[i] then says what was chosen for chunk i.
  Status run(const std::vector<ScheduledChunk>& plan, const std::vector<int32_t>& first_row, const Tensor& logits,
             const std::unordered_map<uint64_t, DraftProposal>& proposals, std::vector<float>& host_logits);
  const std::vector<DeviceDecision>& decisions() const { return decisions_; }

 private:
  // A device tensor of at least rows x cols in `owner` (grown geometrically, never shrunk).
  Result<Tensor> scratch(BufferPtr& owner, size_t& cap, DType t, int64_t rows, int64_t cols);

  // The step's per-row parameters: logit adjustments of every device row (penalties, logit_bias;
  // a verified chunk's rows each see the history extended by the drafts before them, as the host
  // verifier does) and filters (inactive rows filter nothing). Returns whether any row filters.
  bool build_row_params(const std::vector<ScheduledChunk>& plan, const std::vector<int32_t>& first_row, int64_t rows);

  Backend& be_;
  int32_t vocab_;
  bool adjust_ops_ = false, filter_ops_ = false;
  std::vector<DeviceDecision> decisions_;
  std::vector<LogitAdjust> adjust_;
  std::vector<FilterParams> filters_;
  std::vector<int32_t> hist_;
  BufferPtr b_probs_, b_u_, b_res_, b_q_, b_dtok_, b_meta_, b_vu_, b_adj_, b_filt_;
  size_t cap_probs_ = 0, cap_u_ = 0, cap_res_ = 0, cap_q_ = 0, cap_dtok_ = 0, cap_meta_ = 0, cap_vu_ = 0, cap_adj_ = 0,
         cap_filt_ = 0;
};

}  // namespace pagoda
