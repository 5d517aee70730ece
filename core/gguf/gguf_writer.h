// GGUF v3 writer: collects metadata and tensors, then writes one aligned file.
// Used by `pagoda convert` and `pagoda synth`; the output round-trips through GgufFile.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/gguf/gguf.h"

namespace pagoda {

class GgufWriter {
 public:
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  // Copies a value read from another file (any type, arrays included).
  void set_value(const std::string& key, const GgufValue& v);

  // dims: ne[0] first (row length). data must hold the exact byte size for type and dims.
  void add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> dims,
                  std::vector<uint8_t> data);

  Status write(const std::string& path, uint32_t alignment = 32) const;

 private:
  struct Kv { std::string key; std::vector<uint8_t> encoded; };  // type code + value bytes
  struct Tensor { std::string name; GgmlType type; std::vector<uint64_t> dims; std::vector<uint8_t> data; };
  void put(const std::string& key, std::vector<uint8_t> encoded);
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace pagoda
