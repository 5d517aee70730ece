// KvCache: the paged K/V pool on a backend (one K and one V allocation per layer, each
// [num_blocks * block_size, n_kv_heads * head_dim]) with the BlockPool that hands out its blocks.
// It knows the KV shape only (KvShape), not the model: layers, heads, head size, element type,
// block size, and the sliding window every layer attends through.
//
// Block tables are grown, trimmed and released here, by every driver of ModelRunner (the engine's
// scheduler, evaluate_tokens(), the draft model and the tests' generate() oracle), so "a table" means one thing.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/backend.h"
#include "core/kv/block_pool.h"

namespace pagoda {

struct KvShape {
  int32_t n_layers = 0;
  int32_t n_kv_heads = 0;
  int32_t head_dim = 0;
  DType dtype = DType::F32;
  int32_t block_size = 16;
  // The sliding window (in tokens) that EVERY layer attends through, 0 when any layer attends to
  // the whole context. Only then can blocks that left the window be released (release_behind):
  // a model with global layers (Gemma 2/3 interleave them) needs every block to the end.
  int32_t window = 0;

  int64_t kv_cols() const { return int64_t(n_kv_heads) * head_dim; }
  // The capacity equation: bytes of K and V one token (one block) occupies across all layers.
  uint64_t bytes_per_token() const;
  uint64_t bytes_per_block() const { return bytes_per_token() * uint64_t(block_size); }
};

// Blocks of `shape` that fit in `bytes`.
int32_t kv_blocks_for_budget(const KvShape& shape, uint64_t bytes);

// The blocks one sequence owns and how many tokens they hold. An entry of kReleased is a block
// given back because it left the sliding window (KvShape::window): never read again.
struct BlockTable {
  static constexpr int32_t kReleased = -1;
  std::vector<int32_t> blocks;
  int32_t n_tokens = 0;

  int32_t slot(int32_t pos, int32_t block_size) const {
    return blocks[size_t(pos / block_size)] * block_size + pos % block_size;
  }
  int32_t capacity(int32_t block_size) const { return int32_t(blocks.size()) * block_size; }
  int32_t resident() const;  // entries that hold a block (not released)
};

class KvCache {
 public:
  static Result<KvCache> create(Backend& be, const KvShape& shape, int32_t num_blocks);

  const Tensor& k(int32_t layer) const { return k_[size_t(layer)]; }
  const Tensor& v(int32_t layer) const { return v_[size_t(layer)]; }

  // Blocks so `t` holds `n_tokens` positions, after making the blocks from t's first unwritten
  // position `written` on private (make_writable). Errors when the pool runs out; `t` then holds
  // valid references (possibly some of the new blocks), all given back by release().
  Status grow(BlockTable& t, int32_t n_tokens, int32_t written);
  Status grow(BlockTable& t, int32_t n_tokens) { return grow(t, n_tokens, t.capacity(shape_.block_size)); }
  // Gives back blocks past the first `n_tokens` positions (rejected draft tokens).
  void trim(BlockTable& t, int32_t n_tokens);
  // Gives back every block, leaf first: the pool's LRU then evicts a cached chain from its end, so
  // a surviving root keeps its descendants reachable.
  void release(BlockTable& t);
  // With a window on every layer: gives back the blocks no query at position >= `next_pos` can see
  // (all of whose positions are <= next_pos - window); their entries become kReleased. Returns how
  // many were released (0 without a window).
  int32_t release_behind(BlockTable& t, int32_t next_pos);

  // A second table sharing every block of `src` (one more reference each). Full blocks stay
  // shared for good (they are never written again); the last, partial block is copied on the
  // first write through either table (make_writable).
  BlockTable fork(const BlockTable& src);
  // Call before writing K/V at positions >= `pos` of `t`: every shared block from the one holding
  // `pos` on is swapped for a private one (the first keeps its pos % block_size written rows,
  // copied in every layer) and the shared one loses a reference. Errors when the pool has no
  // block for a copy; `t` then still holds valid references (some blocks may already be private).
  Status make_writable(BlockTable& t, int32_t pos);

  BlockPool& pool() { return *pool_; }
  const BlockPool& pool() const { return *pool_; }
  const KvShape& shape() const { return shape_; }
  int32_t block_size() const { return shape_.block_size; }
  DType dtype() const { return shape_.dtype; }
  uint64_t bytes() const { return bytes_; }

 private:
  KvShape shape_;
  Backend* be_ = nullptr;
  std::vector<BufferPtr> bufs_;
  std::vector<Tensor> k_, v_;
  std::unique_ptr<BlockPool> pool_;
  uint64_t bytes_ = 0;
};

}  // namespace pagoda
