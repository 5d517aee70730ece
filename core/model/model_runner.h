// ModelRunner: the decoder forward pass, written once against the Backend interface and driven by
// the model's ArchDesc (core/model/arch.h): the description decides which steps a block has. It takes a
// ForwardBatch (tokens, positions, KV slots, per-sequence block tables, rows that want logits),
// so prefill chunks, decodes and speculative verification all run through the same loop.
#pragma once
#include <cstdint>
#include <vector>

#include "backends/backend.h"
#include "core/kv/kv_cache.h"
#include "core/model/model_config.h"
#include "core/model/model_weights.h"

namespace pagoda {

struct ForwardBatch {
  std::vector<int32_t> tokens;        // one per row
  std::vector<int32_t> positions;     // absolute position of each row in its sequence
  std::vector<int32_t> slots;         // KV slot each row's K/V is written to
  std::vector<SeqInfo> seqs;          // rows grouped by sequence (see backend.h)
  std::vector<int32_t> block_tables;  // concatenated block tables, indexed by SeqInfo::bt_offset
  std::vector<int32_t> logit_rows;    // rows whose logits are wanted, in output order
  int32_t max_ctx_len = 0;

  int32_t n_tokens() const { return int32_t(tokens.size()); }
  // Appends `n` tokens of one sequence starting at position `start` (the table must already hold
  // blocks for positions up to start + n). `logits`: 0 = none, 1 = last row only, 2 = every row.
  void add_sequence(const int32_t* toks, int32_t n, int32_t start, const BlockTable& table,
                    int32_t block_size, int logits);
};

// The KV shape of `c`'s cache: its layers, KV heads and head size, and (when every layer attends
// through a sliding window) that window, so the cache may release blocks that left it.
KvShape kv_shape(const ModelConfig& c, int32_t block_size, DType dtype);

class ModelRunner {
 public:
  ModelRunner(Backend& be, const ModelConfig& cfg, const ModelWeights& w) : be_(be), cfg_(cfg), w_(w) {}

  // Runs the batch; on return `logits` holds logit_rows.size() rows of vocab floats.
  Status forward(const ForwardBatch& b, KvCache& kv, std::vector<float>* logits);
  // Same, leaving the logits on the device (rows as in logit_rows) for device-side sampling.
  Result<Tensor> forward_device(const ForwardBatch& b, KvCache& kv);

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() { return be_; }

 private:
  Status ensure_scratch(const ForwardBatch& b);
  Result<Tensor> buffer(BufferPtr& owner, DType t, int64_t rows, int64_t cols);
  void layer(int32_t l, const ForwardBatch& b, KvCache& kv, const AttentionParams& ap);
  // x[i, :] += bias[0, :] for every row: the bias broadcast by an embedding lookup of its one row.
  void add_bias(const Tensor& x, const Tensor& bias);

  Backend& be_;
  const ModelConfig& cfg_;
  const ModelWeights& w_;
  int64_t cap_tokens_ = 0, cap_logits_ = 0, cap_seqs_ = 0, cap_bt_ = 0;
  // Scratch activations, [tokens, width] each, grown on demand.
  BufferPtr b_x_, b_xb_, b_q_, b_k_, b_v_, b_att_, b_hb_, b_hb2_, b_xl_, b_logits_;
  BufferPtr b_ids_, b_pos_, b_slots_, b_seqs_, b_bt_, b_lrows_, b_bias_, b_zeros_;
  Tensor x_, xb_, q_, k_, v_, att_, hb_, hb2_, xl_, logits_, ids_, pos_, slots_, seqs_, bt_, lrows_, bias_, zeros_;
};

}  // namespace pagoda
