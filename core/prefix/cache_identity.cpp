#include "core/prefix/cache_identity.h"

#include <openssl/evp.h>

#include <cstring>
#include <memory>

namespace pagoda {
namespace {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void update(const void* p, size_t n) { EVP_DigestUpdate(ctx_.get(), p, n); }
  void field(const std::string& s) {
    const uint64_t n = s.size();
    update(&n, 8);
    update(s.data(), s.size());
  }
  BlockKey final() {
    BlockKey k{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx_.get(), k.data(), &len);
    return k;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

}  // namespace

std::string to_hex(const BlockKey& k, size_t n_bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n_bytes && i < k.size(); ++i) {
    s += kHex[k[i] >> 4];
    s += kHex[k[i] & 15];
  }
  return s;
}

BlockKey CacheIdentity::root() const {
  Sha256 h;
  const uint32_t v = kKeyFormatVersion;
  h.update(&v, 4);
  h.field(weights_digest);
  h.field(tokenizer_digest);
  h.field(adapter_id);
  h.field(kv_dtype);
  h.update(&block_size, 4);
  h.update(&rope_scaling, 4);
  h.field(model_compute);
  h.field(kernel_precision);
  h.field(scope);
  return h.final();
}

CacheIdentity CacheIdentity::with_scope(std::string s) const {
  CacheIdentity c = *this;
  c.scope = std::move(s);
  return c;
}

BlockKey chain_key(const BlockKey& parent, std::span<const int32_t> block_tokens) {
  Sha256 h;
  h.update(parent.data(), parent.size());
  h.update(block_tokens.data(), block_tokens.size_bytes());
  return h.final();
}

std::vector<BlockKey> block_keys(const CacheIdentity& id, std::span<const int32_t> tokens, int32_t public_len) {
  std::vector<BlockKey> keys;
  extend_block_keys(id, tokens, public_len, keys);
  return keys;
}

void extend_block_keys(const CacheIdentity& id, std::span<const int32_t> tokens, int32_t public_len,
                       std::vector<BlockKey>& keys) {
  const int32_t bs = id.block_size;
  const size_t n_full = tokens.size() / size_t(bs);
  if (keys.size() >= n_full) return;
  const bool has_public = public_len >= bs && !id.scope.empty();
  auto is_public = [&](size_t i) { return has_public && int64_t(i + 1) * bs <= public_len; };
  size_t i = keys.size();
  BlockKey parent = i > 0 ? keys[i - 1] : (is_public(0) ? id.with_scope("").root() : id.root());
  for (; i < n_full; ++i) {
    if (i > 0 && is_public(i - 1) && !is_public(i)) {
      // Leaving the public region: bind the rest of the chain to the tenant.
      const BlockKey tenant_root = id.root();
      Sha256 h;
      h.update(parent.data(), parent.size());
      h.update(tenant_root.data(), tenant_root.size());
      parent = h.final();
    }
    parent = chain_key(parent, tokens.subspan(i * size_t(bs), size_t(bs)));
    keys.push_back(parent);
  }
}

}  // namespace pagoda
