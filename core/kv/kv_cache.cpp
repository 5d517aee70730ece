#include "core/kv/kv_cache.h"

#include <algorithm>
#include <string>
#include <vector>

namespace pagoda {

uint64_t KvShape::bytes_per_token() const {
  return 2ull * uint64_t(n_layers) * uint64_t(kv_cols()) * uint64_t(dtype_block_bytes(dtype));
}

int32_t kv_blocks_for_budget(const KvShape& shape, uint64_t bytes) {
  const uint64_t per_block = shape.bytes_per_block();
  const uint64_t n = per_block ? bytes / per_block : 0;
  return int32_t(std::min<uint64_t>(n, 1u << 30));
}

int32_t BlockTable::resident() const {
  return int32_t(std::count_if(blocks.begin(), blocks.end(), [](int32_t b) { return b != kReleased; }));
}

Result<KvCache> KvCache::create(Backend& be, const KvShape& shape, int32_t num_blocks) {
  if (shape.block_size <= 0 || shape.block_size > 1024) return make_error("block size must be in 1..1024");
  if (shape.n_layers <= 0 || shape.n_kv_heads <= 0 || shape.head_dim <= 0)
    return make_error("KV shape needs layers, KV heads and a head size (got " + std::to_string(shape.n_layers) + ", " +
                      std::to_string(shape.n_kv_heads) + ", " + std::to_string(shape.head_dim) + ")");
  if (shape.window < 0) return make_error("KV window must be >= 0");
  if (num_blocks <= 0) return make_error("the KV budget holds no block; raise --kv-memory");
  if (!be.supports(Op::PagedAttention, shape.dtype))
    return make_error(std::string("backend cannot hold a ") + dtype_name(shape.dtype) + " KV cache");
  KvCache kv;
  kv.shape_ = shape;
  const int64_t slots = int64_t(num_blocks) * shape.block_size;
  const int64_t cols = shape.kv_cols();
  for (int32_t l = 0; l < shape.n_layers; ++l) {
    for (int kind = 0; kind < 2; ++kind) {
      const size_t bytes = row_bytes(shape.dtype, cols) * size_t(slots);
      auto b = be.alloc(bytes);
      if (!b) return make_error("allocating the KV cache (" + std::to_string(bytes) + " bytes for layer " +
                                std::to_string(l) + "): " + b.error());
      Tensor t{b->get(), 0, shape.dtype, slots, cols};
      (kind == 0 ? kv.k_ : kv.v_).push_back(t);
      kv.bufs_.push_back(std::move(*b));
      kv.bytes_ += bytes;
    }
  }
  kv.pool_ = std::make_unique<BlockPool>(num_blocks);
  kv.be_ = &be;
  return kv;
}

Status KvCache::grow(BlockTable& t, int32_t n_tokens, int32_t written) {
  // Blocks shared with a fork are copied before this table writes into them.
  PAGODA_TRY(make_writable(t, written));
  while (t.capacity(shape_.block_size) < n_tokens) {
    auto b = pool_->allocate();
    if (!b)
      return make_error("KV cache exhausted: " + std::to_string(n_tokens) + " tokens need more than the " +
                        std::to_string(pool_->num_blocks()) + " blocks of the pool (raise --kv-memory)");
    t.blocks.push_back(*b);
  }
  return {};
}

void KvCache::trim(BlockTable& t, int32_t n_tokens) {
  const size_t keep = size_t((std::max(0, n_tokens) + shape_.block_size - 1) / shape_.block_size);
  while (t.blocks.size() > keep) {
    if (t.blocks.back() != BlockTable::kReleased) pool_->release(t.blocks.back());
    t.blocks.pop_back();
  }
}

void KvCache::release(BlockTable& t) {
  for (auto it = t.blocks.rbegin(); it != t.blocks.rend(); ++it)
    if (*it != BlockTable::kReleased) pool_->release(*it);
  t.blocks.clear();
  t.n_tokens = 0;
}

int32_t KvCache::release_behind(BlockTable& t, int32_t next_pos) {
  if (shape_.window <= 0) return 0;
  // Query i sees key j iff i - j < window; every later query has i >= next_pos, so block b (keys
  // up to (b + 1) * bs - 1) is invisible to all of them once (b + 1) * bs <= next_pos - window + 1.
  const int32_t bs = shape_.block_size;
  const int32_t dead = std::min<int32_t>(int32_t(t.blocks.size()), std::max(0, next_pos - shape_.window + 1) / bs);
  int32_t n = 0;
  for (int32_t b = 0; b < dead; ++b) {
    int32_t& e = t.blocks[size_t(b)];
    if (e == BlockTable::kReleased) continue;
    pool_->release(e);
    e = BlockTable::kReleased;
    ++n;
  }
  return n;
}

BlockTable KvCache::fork(const BlockTable& src) {
  for (int32_t b : src.blocks)
    if (b != BlockTable::kReleased) pool_->retain(b);
  return src;
}

Status KvCache::make_writable(BlockTable& t, int32_t pos) {
  const int32_t bs = shape_.block_size;
  if (pos < 0) return make_error("make_writable: negative position");
  // Every shared block from the one holding `pos` to the end of the table is swapped for a
  // private one; only the first keeps content (its rows before `pos`), the rest are rewritten.
  for (size_t i = size_t(pos / bs); i < t.blocks.size(); ++i) {
    const int32_t old = t.blocks[i];
    if (old == BlockTable::kReleased || pool_->refcount(old) <= 1) continue;
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
