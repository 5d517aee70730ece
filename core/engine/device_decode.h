// Device-resident decode: after the forward pass the logits stay on the device; greedy picks
// (argmax), temperature draws (softmax + sample_probs with the host sampler's Philox uniforms) and
// speculative verification (verify) run as backend ops, and only token ids and acceptance counts
// are downloaded. A sequence whose sampling needs something those ops lack (a grammar mask,
// penalties or logit_bias, logprobs, top-k/top-p/min-p) gets its logits rows downloaded and is
// sampled on the host as before; both kinds can share one step.
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

// EngineConfig::device_sampling: "auto" (on for every backend but cpu / cpu-ref), "on", "off".
Result<bool> resolve_device_sampling(const std::string& mode, const std::string& backend_name);

// Whether `s`'s next token can be chosen by the device ops: greedy, or plain temperature sampling
// (no top-k below the vocabulary, top_p 1, min_p 0), with no grammar, penalties, logit_bias or logprobs.
bool device_samplable(const Sequence& s, int32_t vocab);

// What the device decided for one planned chunk (chosen = false: the host decides, from its rows).
struct DeviceDecision {
  bool chosen = false;
  int32_t token = -1;    // the sampled token, or verification's correction/bonus token
  int32_t accepted = 0;  // verification: leading drafts kept
  int32_t k = 0;         // verification: drafts verified
};

class DeviceDecoder {
 public:
  DeviceDecoder(Backend& be, int32_t vocab) : be_(be), vocab_(vocab) {}

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

  Backend& be_;
  int32_t vocab_;
  std::vector<DeviceDecision> decisions_;
  BufferPtr b_probs_, b_u_, b_res_, b_q_, b_dtok_, b_meta_, b_vu_;
  size_t cap_probs_ = 0, cap_u_ = 0, cap_res_ = 0, cap_q_ = 0, cap_dtok_ = 0, cap_meta_ = 0, cap_vu_ = 0;
};

}  // namespace pagoda
