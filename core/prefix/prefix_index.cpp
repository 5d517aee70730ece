#include "core/prefix/prefix_index.h"

namespace pagoda {

PrefixIndex::PrefixIndex(BlockPool& pool) : pool_(pool), by_block_(size_t(pool.num_blocks())) {
  pool_.set_evict_callback([this](int32_t b) { forget(b); });
}

void PrefixIndex::forget(int32_t block) {
  auto& k = by_block_[size_t(block)];
  if (!k) return;
  by_key_.erase(*k);
  k.reset();
}

std::vector<int32_t> PrefixIndex::match_and_retain(std::span<const BlockKey> keys) {
  std::vector<int32_t> out;
  for (const auto& k : keys) {
    auto it = by_key_.find(k);
    if (it == by_key_.end()) break;
    pool_.retain(it->second);
    out.push_back(it->second);
  }
  return out;
}

bool PrefixIndex::insert(const BlockKey& key, int32_t block) {
  if (by_block_[size_t(block)]) return by_block_[size_t(block)] == key;
  auto [it, inserted] = by_key_.emplace(key, block);
  if (!inserted) return false;
  by_block_[size_t(block)] = key;
  pool_.set_keyed(block, true);
  return true;
}

void PrefixIndex::clear() {
  for (const auto& [key, block] : by_key_) {
    by_block_[size_t(block)].reset();
    if (pool_.state(block) == BlockState::Cached) pool_.evict_cached(block);
    else pool_.set_keyed(block, false);
  }
  by_key_.clear();
}

std::optional<BlockKey> PrefixIndex::key_of(int32_t block) const { return by_block_[size_t(block)]; }

}  // namespace pagoda
