// GGUF v3 reader (mmap) and shared types. Every count, length, offset and tensor extent is checked
// against the file size before use; a malformed file yields an error naming the field and offset.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/util/result.h"

namespace pagoda {

// ggml tensor types (values are the on-disk codes). Every type ggml defines is listed, so a file
// holding one Pagoda cannot run still parses, and the model loader can name the type it refuses.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

const char* ggml_type_name(GgmlType t);
bool ggml_type_known(uint32_t code);
// Elements per block and bytes per block (F32/F16: block of 1).
int64_t ggml_block_elems(GgmlType t);
int64_t ggml_block_bytes(GgmlType t);
// Bytes for n elements; nullopt if n is not a multiple of the block size or overflows.
std::optional<uint64_t> ggml_row_bytes(GgmlType t, uint64_t n);

enum class GgufValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};

struct GgufArray;
// One metadata value. Arrays hold a homogeneous element type.
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<GgufArray>> v;

  std::optional<int64_t> as_int() const;    // any integer type (and bool)
  std::optional<double> as_float() const;   // float or integer types
  const std::string* as_string() const;
  const GgufArray* as_array() const;
};

struct GgufArray {
  GgufValueType elem_type = GgufValueType::U8;
  std::vector<GgufValue> items;  // small arrays and strings
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ne[0] is the fastest-varying (row length)
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;         // relative to the data section
  uint64_t n_bytes = 0;
  uint64_t n_elements() const;
};

class GgufFile {
 public:
  // Opens and validates a file; the mapping lives as long as the GgufFile.
  static Result<std::unique_ptr<GgufFile>> open(const std::string& path);
  // Parses an in-memory image (used by fuzzing and tests); the bytes are copied.
  static Result<std::unique_ptr<GgufFile>> parse(const uint8_t* data, size_t size);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }

  const GgufValue* find(const std::string& key) const;
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // Pointer to a tensor's bytes inside the mapping.
  const uint8_t* tensor_data(const GgufTensorInfo& t) const { return data_ + data_offset_ + t.offset; }
  // Owner of the file's bytes: tensor_data() pointers stay valid while a copy of it lives, even
  // after the GgufFile is gone (a backend that uses weights in place holds one).
  std::shared_ptr<const void> bytes_owner() const { return bytes_; }
  // For a backend that computes on the weights where they lie in host memory (the CPU): makes the
  // mapping reach them through 2 MiB pages where the kernel can. In 4 KiB pages a matvec streaming
  // hundreds of MiB loses much of its bandwidth to TLB misses and to the hardware prefetcher
  // stopping at each page edge (1B-shape Q4_K_M decode on one core: 19-26 tok/s in 4 KiB pages,
  // 35-44 in 2 MiB ones; docs/perf.md). The mapping is 2 MiB aligned and advised for huge pages,
  // so where the page cache holds the file in 2 MiB folios (after the kernel read it through such
  // a mapping, or with read()) it already is. Where it holds small folios (after the file was
  // written), drops them and reads the file again through the mapping (files of 64 MiB or more:
  // the TLB reaches most of a smaller one anyway). Returns whether at least 90% of the file's
  // whole 2 MiB pages are now mapped as huge pages.
  bool prefer_huge_pages();
  // The share of the file's whole 2 MiB pages this mapping reaches through 2 MiB entries, after
  // touching one byte per 2 MiB (0 for an in-memory image).
  double huge_page_share() const;
  // Whether the bytes are a mapping of the file (else a copy in memory).
  bool mapped() const { return mapped_; }
  // Drops this process's resident pages among the whole pages within [p, p + n) of a file
  // mapping (one tensor's bytes, once a backend has made its own copy of them; a later read
  // faults them back in from the page cache). Static, so a backend can call it after the
  // GgufFile is gone, as long as it keeps the mapping (bytes_owner()); only for a mapped file.
  static void drop_pages(const void* p, size_t n);

  // Typed metadata access with a clear error when missing or of the wrong type.
  Result<int64_t> get_int(const std::string& key) const;
  Result<double> get_float(const std::string& key) const;
  Result<std::string> get_string(const std::string& key) const;
  int64_t get_int_or(const std::string& key, int64_t dflt) const;
  double get_float_or(const std::string& key, double dflt) const;

 private:
  GgufFile() = default;
  Status parse_all();

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;                 // bytes_ is an mmap of the file (else a copy in memory)
  std::shared_ptr<const void> bytes_;   // unmaps (or frees the copy) when the last owner drops it
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace pagoda
