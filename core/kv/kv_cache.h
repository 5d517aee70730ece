// KvCache: the paged K/V pool on a backend (one K and one V allocation per layer, each
// [num_blocks * block_size, n_kv_heads * head_dim]) with the BlockPool that hands out its blocks.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/backend.h"
#include "core/kv/block_pool.h"
#include "core/model/model_config.h"

namespace pagoda {

struct KvCacheConfig {
  int32_t block_size = 16;
  int32_t num_blocks = 0;
  DType dtype = DType::F32;
};

// Blocks that fit in `bytes` under the capacity equation.
int32_t kv_blocks_for_budget(const ModelConfig& c, uint64_t bytes, int32_t block_size, DType dtype);

// The blocks one sequence owns and how many tokens they hold.
struct BlockTable {
  std::vector<int32_t> blocks;
  int32_t n_tokens = 0;

  int32_t slot(int32_t pos, int32_t block_size) const {
    return blocks[size_t(pos / block_size)] * block_size + pos % block_size;
  }
  int32_t capacity(int32_t block_size) const { return int32_t(blocks.size()) * block_size; }
};

class KvCache {
 public:
  static Result<KvCache> create(Backend& be, const ModelConfig& c, const KvCacheConfig& cfg);

  const Tensor& k(int32_t layer) const { return k_[size_t(layer)]; }
  const Tensor& v(int32_t layer) const { return v_[size_t(layer)]; }
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
  int32_t block_size() const { return cfg_.block_size; }
  DType dtype() const { return cfg_.dtype; }
  uint64_t bytes() const { return bytes_; }

 private:
  KvCacheConfig cfg_;
  Backend* be_ = nullptr;
  std::vector<BufferPtr> bufs_;
  std::vector<Tensor> k_, v_;
  std::unique_ptr<BlockPool> pool_;
  uint64_t bytes_ = 0;
};

}  // namespace pagoda
