// Cache identity and block keys. A block's key is SHA-256 chained from its parent and rooted in
// everything that decides its K/V bytes (weights, tokenizer, adapter, KV/precision policy) plus the
// tenant scope, so a cached block is reused only by a request that would compute the same bytes.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace pagoda {

using BlockKey = std::array<uint8_t, 32>;

std::string to_hex(const BlockKey& k, size_t n_bytes = 32);

struct CacheIdentity {
  static constexpr uint32_t kKeyFormatVersion = 1;
  std::string weights_digest;
  std::string tokenizer_digest;
  std::string adapter_id;        // "" = base model
  std::string kv_dtype = "f32";
  int32_t block_size = 16;
  float rope_scaling = 1.0f;
  // What the model computes beyond its tensors (ModelConfig::compute_signature(): architecture,
  // RoPE base and style, local RoPE base, RoPE scaling type and values, sliding window, soft caps,
  // query scale): two files with the same weights but another window, RoPE base or scaling write
  // other K/V bytes.
  std::string model_compute;
  std::string kernel_precision;  // precision class of the kernels that wrote the KV (e.g. "cpu-f32")
  std::string scope;             // tenant; "" is the public scope

  // SHA-256 over the fields in a fixed order, each length-prefixed.
  BlockKey root() const;
  // The same identity with another scope (public prefixes are keyed with scope "").
  CacheIdentity with_scope(std::string s) const;
};

// key(i) = SHA-256(key(i-1) || tokens of block i), key(-1) = root.
BlockKey chain_key(const BlockKey& parent, std::span<const int32_t> block_tokens);

// Keys for every full block of `tokens`. Blocks lying wholly inside the first `public_len` tokens
// are chained from the public root; at the first block containing anything else the chain mixes in
// the tenant root, so nothing a tenant wrote is keyed outside its own scope.
std::vector<BlockKey> block_keys(const CacheIdentity& id, std::span<const int32_t> tokens, int32_t public_len = 0);
// Appends the keys of full blocks beyond keys.size() (the same chain block_keys would build).
void extend_block_keys(const CacheIdentity& id, std::span<const int32_t> tokens, int32_t public_len,
                       std::vector<BlockKey>& keys);

}  // namespace pagoda
