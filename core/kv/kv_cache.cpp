#include "core/kv/kv_cache.h"

#include <algorithm>
#include <vector>

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
  kv.be_ = &be;
  return kv;
}

BlockTable KvCache::fork(const BlockTable& src) {
  for (int32_t b : src.blocks) pool_->retain(b);
  return src;
}

Status KvCache::make_writable(BlockTable& t, int32_t pos) {
  const int32_t bs = cfg_.block_size;
  if (pos < 0) return make_error("make_writable: negative position");
  // Every shared block from the one holding `pos` to the end of the table is swapped for a
  // private one; only the first keeps content (its rows before `pos`), the rest are rewritten.
  for (size_t i = size_t(pos / bs); i < t.blocks.size(); ++i) {
    const int32_t old = t.blocks[i];
    if (pool_->refcount(old) <= 1) continue;
    auto fresh = pool_->allocate();
    if (!fresh) return make_error("KV cache full: no block for a copy-on-write of a shared block");
    const int32_t rows = i == size_t(pos / bs) ? pos % bs : 0;
    if (rows > 0) {  // on the device, in stream order: no host round trip, no sync
      for (const auto* side : {&k_, &v_})
        for (const Tensor& layer : *side)
          be_->copy(layer.row_slice(int64_t(old) * bs, rows), layer.row_slice(int64_t(*fresh) * bs, rows));
    }
    pool_->release(old);
    t.blocks[i] = *fresh;
  }
  return {};
}

}  // namespace pagoda
