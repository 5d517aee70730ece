#include "core/kv/kv_cache.h"

#include <algorithm>

namespace pagoda {

int32_t kv_blocks_for_budget(const ModelConfig& c, uint64_t bytes, int32_t block_size, DType dtype) {
  const uint64_t per_token = c.kv_bytes_per_token(uint32_t(dtype_block_bytes(dtype)));
  const uint64_t per_block = per_token * uint64_t(block_size);
  const uint64_t n = per_block ? bytes / per_block : 0;
  return int32_t(std::min<uint64_t>(n, 1u << 30));
}

Result<KvCache> KvCache::create(Backend& be, const ModelConfig& c, const KvCacheConfig& cfg) {
  if (cfg.block_size <= 0 || cfg.block_size > 1024) return make_error("block size must be in 1..1024");
  if (cfg.num_blocks <= 0) return make_error("the KV budget holds no block; raise --kv-memory");
  if (!be.supports(Op::PagedAttention, cfg.dtype))
    return make_error(std::string("backend cannot hold a ") + dtype_name(cfg.dtype) + " KV cache");
  KvCache kv;
  kv.cfg_ = cfg;
  const int64_t slots = int64_t(cfg.num_blocks) * cfg.block_size;
  const int64_t cols = int64_t(c.n_kv_heads) * c.head_dim;
  for (int32_t l = 0; l < c.n_layers; ++l) {
    for (int kind = 0; kind < 2; ++kind) {
      const size_t bytes = row_bytes(cfg.dtype, cols) * size_t(slots);
      auto b = be.alloc(bytes);
      if (!b) return make_error("allocating the KV cache (" + std::to_string(bytes) + " bytes for layer " +
                                std::to_string(l) + "): " + b.error());
      Tensor t{b->get(), 0, cfg.dtype, slots, cols};
      (kind == 0 ? kv.k_ : kv.v_).push_back(t);
      kv.bufs_.push_back(std::move(*b));
      kv.bytes_ += bytes;
    }
  }
  kv.pool_ = std::make_unique<BlockPool>(cfg.num_blocks);
  return kv;
}

}  // namespace pagoda
