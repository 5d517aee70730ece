#include "core/gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace pagoda {
namespace {

constexpr uint64_t kMaxStringLen = 1ull << 30;   // no metadata string is a gigabyte
constexpr uint64_t kMaxArrayLen = 1ull << 32;
// Parsed elements take sizeof(GgufValue) each, far more than their bytes in the file, so a length
// the file can hold may still ask reserve() for more memory than exists. The largest real array
// (a 256k-token vocabulary) needs ~12 MiB; 256 MiB is far past any real model.
constexpr uint64_t kMaxArrayMemory = 256ull << 20;
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 4;

constexpr size_t kHugePage = size_t(2) << 20;
size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// `bytes` (a multiple of kHugePage) of address space at a 2 MiB boundary, reserved without access
// for a MAP_FIXED mapping over it; nullptr where there is no room.
void* reserve_huge_aligned(size_t bytes) {
  void* r = mmap(nullptr, bytes + kHugePage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) return nullptr;
  const uintptr_t base = reinterpret_cast<uintptr_t>(r), aligned = round_up(base, kHugePage);
  if (aligned > base) munmap(r, aligned - base);
  if (base + kHugePage > aligned) munmap(reinterpret_cast<void*>(aligned + bytes), base + kHugePage - aligned);
  return reinterpret_cast<void*>(aligned);
}

std::string at(uint64_t off) { return " at offset " + std::to_string(off); }

// Bounds-checked little-endian cursor over the file image.
class Cursor {
 public:
  Cursor(const uint8_t* d, uint64_t n) : d_(d), n_(n) {}
  uint64_t pos() const { return p_; }
  uint64_t remaining() const { return n_ - p_; }

  template <typename T>
  Result<T> read(const char* what) {
    if (remaining() < sizeof(T))
      return make_error(std::string("truncated file reading ") + what + at(p_));
    T v;
    std::memcpy(&v, d_ + p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }

  Result<std::string> read_string(const char* what) {
    const uint64_t start = p_;
    auto len = read<uint64_t>(what);
    if (!len) return len.take_error();
    if (*len > kMaxStringLen || *len > remaining())
      return make_error(std::string("string length ") + std::to_string(*len) + " of " + what +
                        " exceeds the file" + at(start));
    std::string s(reinterpret_cast<const char*>(d_ + p_), *len);
    p_ += *len;
    return s;
  }

 private:
  const uint8_t* d_;
  uint64_t n_;
  uint64_t p_ = 0;
};

uint64_t scalar_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::BOOL: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    default: return 0;
  }
}

Result<GgufValue> read_value(Cursor& c, GgufValueType type, const std::string& key, int depth);

Result<GgufValue> read_scalar(Cursor& c, GgufValueType type) {
  GgufValue out;
  out.type = type;
  switch (type) {
    case GgufValueType::U8: { auto r = c.read<uint8_t>("u8 value"); if (!r) return r.take_error(); out.v = uint64_t(*r); break; }
    case GgufValueType::I8: { auto r = c.read<int8_t>("i8 value"); if (!r) return r.take_error(); out.v = int64_t(*r); break; }
    case GgufValueType::U16: { auto r = c.read<uint16_t>("u16 value"); if (!r) return r.take_error(); out.v = uint64_t(*r); break; }
    case GgufValueType::I16: { auto r = c.read<int16_t>("i16 value"); if (!r) return r.take_error(); out.v = int64_t(*r); break; }
    case GgufValueType::U32: { auto r = c.read<uint32_t>("u32 value"); if (!r) return r.take_error(); out.v = uint64_t(*r); break; }
    case GgufValueType::I32: { auto r = c.read<int32_t>("i32 value"); if (!r) return r.take_error(); out.v = int64_t(*r); break; }
    case GgufValueType::U64: { auto r = c.read<uint64_t>("u64 value"); if (!r) return r.take_error(); out.v = uint64_t(*r); break; }
    case GgufValueType::I64: { auto r = c.read<int64_t>("i64 value"); if (!r) return r.take_error(); out.v = int64_t(*r); break; }
    case GgufValueType::F32: { auto r = c.read<float>("f32 value"); if (!r) return r.take_error(); out.v = double(*r); break; }
    case GgufValueType::F64: { auto r = c.read<double>("f64 value"); if (!r) return r.take_error(); out.v = *r; break; }
    case GgufValueType::BOOL: {
      auto r = c.read<uint8_t>("bool value");
      if (!r) return r.take_error();
      out.v = *r != 0;
      break;
    }
    default: return make_error("not a scalar type");
  }
  return out;
}

Result<GgufValue> read_value(Cursor& c, GgufValueType type, const std::string& key, int depth) {
  const uint64_t start = c.pos();
  if (type == GgufValueType::STRING) {
    auto s = c.read_string(("value of '" + key + "'").c_str());
    if (!s) return s.take_error();
    GgufValue out;
    out.type = type;
    out.v = std::move(*s);
    return out;
  }
  if (type == GgufValueType::ARRAY) {
    if (depth >= kMaxArrayDepth) return make_error("arrays nested too deeply in '" + key + "'" + at(start));
    auto et = c.read<uint32_t>("array element type");
    if (!et) return et.take_error();
    if (*et > uint32_t(GgufValueType::F64))
      return make_error("unknown array element type " + std::to_string(*et) + " in '" + key + "'" + at(start));
    auto n = c.read<uint64_t>("array length");
    if (!n) return n.take_error();
    const auto elem = GgufValueType(*et);
    // Every element takes at least its scalar size (strings at least their 8-byte length).
    const uint64_t min_elem = elem == GgufValueType::STRING || elem == GgufValueType::ARRAY ? 8 : scalar_size(elem);
    if (*n > kMaxArrayLen || *n > c.remaining() / (min_elem ? min_elem : 1))
      return make_error("array length " + std::to_string(*n) + " of '" + key + "' exceeds the file" + at(start));
    if (*n > kMaxArrayMemory / sizeof(GgufValue))
      return make_error("array '" + key + "' of " + std::to_string(*n) + " elements would take " +
                        std::to_string(*n * sizeof(GgufValue) >> 20) + " MiB in memory (limit " +
                        std::to_string(kMaxArrayMemory >> 20) + " MiB)" + at(start));
    auto arr = std::make_shared<GgufArray>();
    arr->elem_type = elem;
    arr->items.reserve(*n);
    for (uint64_t i = 0; i < *n; ++i) {
      auto v = read_value(c, elem, key, depth + 1);
      if (!v) return v.take_error();
      arr->items.push_back(std::move(*v));
    }
    GgufValue out;
    out.type = type;
    out.v = std::move(arr);
    return out;
  }
  if (scalar_size(type) == 0) return make_error("unknown value type " + std::to_string(uint32_t(type)) + " for '" + key + "'" + at(start));
  return read_scalar(c, type);
}

}  // namespace

namespace {
struct GgmlTypeRow {
  GgmlType type;
  const char* name;
  int64_t block_elems, block_bytes;
};
// Block sizes as ggml-common.h's block_* structs define them.
constexpr GgmlTypeRow kGgmlTypes[] = {
    {GgmlType::F32, "F32", 1, 4},          {GgmlType::F16, "F16", 1, 2},          {GgmlType::Q4_0, "Q4_0", 32, 18},
    {GgmlType::Q4_1, "Q4_1", 32, 20},      {GgmlType::Q5_0, "Q5_0", 32, 22},      {GgmlType::Q5_1, "Q5_1", 32, 24},
    {GgmlType::Q8_0, "Q8_0", 32, 34},      {GgmlType::Q8_1, "Q8_1", 32, 36},      {GgmlType::Q2_K, "Q2_K", 256, 84},
    {GgmlType::Q3_K, "Q3_K", 256, 110},    {GgmlType::Q4_K, "Q4_K", 256, 144},    {GgmlType::Q5_K, "Q5_K", 256, 176},
    {GgmlType::Q6_K, "Q6_K", 256, 210},    {GgmlType::Q8_K, "Q8_K", 256, 292},    {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66},
    {GgmlType::IQ2_XS, "IQ2_XS", 256, 74}, {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98}, {GgmlType::IQ1_S, "IQ1_S", 256, 50},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18},  {GgmlType::IQ3_S, "IQ3_S", 256, 110},  {GgmlType::IQ2_S, "IQ2_S", 256, 82},
    {GgmlType::IQ4_XS, "IQ4_XS", 256, 136}, {GgmlType::I8, "I8", 1, 1},           {GgmlType::I16, "I16", 1, 2},
    {GgmlType::I32, "I32", 1, 4},          {GgmlType::I64, "I64", 1, 8},          {GgmlType::F64, "F64", 1, 8},
    {GgmlType::IQ1_M, "IQ1_M", 256, 56},   {GgmlType::BF16, "BF16", 1, 2},        {GgmlType::TQ1_0, "TQ1_0", 256, 54},
    {GgmlType::TQ2_0, "TQ2_0", 256, 66},   {GgmlType::MXFP4, "MXFP4", 32, 17},
};
const GgmlTypeRow* ggml_type_row(uint32_t code) {
  for (const auto& r : kGgmlTypes)
    if (uint32_t(r.type) == code) return &r;
  return nullptr;
}
}  // namespace

const char* ggml_type_name(GgmlType t) {
  const auto* r = ggml_type_row(uint32_t(t));
  return r ? r->name : "?";
}

bool ggml_type_known(uint32_t code) { return ggml_type_row(code) != nullptr; }

int64_t ggml_block_elems(GgmlType t) {
  const auto* r = ggml_type_row(uint32_t(t));
  return r ? r->block_elems : 1;
}

int64_t ggml_block_bytes(GgmlType t) {
  const auto* r = ggml_type_row(uint32_t(t));
  return r ? r->block_bytes : 0;
}

std::optional<uint64_t> ggml_row_bytes(GgmlType t, uint64_t n) {
  const uint64_t be = uint64_t(ggml_block_elems(t));
  if (n % be != 0) return std::nullopt;
  const uint64_t blocks = n / be;
  const uint64_t bb = uint64_t(ggml_block_bytes(t));
  if (bb == 0 || blocks > UINT64_MAX / bb) return std::nullopt;
  return blocks * bb;
}

std::optional<int64_t> GgufValue::as_int() const {
  if (auto* u = std::get_if<uint64_t>(&v)) return *u > uint64_t(INT64_MAX) ? std::nullopt : std::optional<int64_t>(int64_t(*u));
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  return std::nullopt;
}

std::optional<double> GgufValue::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto i = as_int()) return double(*i);
  return std::nullopt;
}

const std::string* GgufValue::as_string() const { return std::get_if<std::string>(&v); }

const GgufArray* GgufValue::as_array() const {
  auto* p = std::get_if<std::shared_ptr<GgufArray>>(&v);
  return p ? p->get() : nullptr;
}

uint64_t GgufTensorInfo::n_elements() const {
  uint64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

Result<std::unique_ptr<GgufFile>> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return make_error("cannot stat '" + path + "'");
  }
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->size_ = uint64_t(st.st_size);
  if (f->size_ > 0) {
    // At a 2 MiB boundary and with MADV_HUGEPAGE: where the page cache holds the file in 2 MiB
    // folios (as it does after reading it through such a mapping), the mapping reaches them
    // through 2 MiB entries, so a matvec streaming the weights is not held up by TLB misses.
    const size_t n = size_t(f->size_), span = round_up(n, kHugePage);
    void* at = reserve_huge_aligned(span);
    void* m = at ? mmap(at, n, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) : MAP_FAILED;
    if (m == MAP_FAILED) {
      const int err = errno;
      if (at) munmap(at, span);
      ::close(fd);
      return make_error("cannot mmap '" + path + "': " + std::strerror(err));
    }
    madvise(m, n, MADV_HUGEPAGE);  // advice: without THP for files, 4 KiB pages as before
    f->bytes_ = std::shared_ptr<const void>(m, [span](const void* p) { munmap(const_cast<void*>(p), span); });
    f->mapped_ = true;
    f->data_ = static_cast<const uint8_t*>(m);
  }
  ::close(fd);
  auto st2 = f->parse_all();
  if (!st2) return make_error(path + ": " + st2.error());
  // The tensors are read next (uploaded, or used in place and hashed): start reading them ahead.
  if (f->mapped_ && f->data_offset_ < f->size_) {
    const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE)), start = f->data_offset_ / page * page;
    madvise(const_cast<uint8_t*>(f->data_) + start, size_t(f->size_ - start), MADV_WILLNEED);
  }
  return f;
}

Result<std::unique_ptr<GgufFile>> GgufFile::parse(const uint8_t* data, size_t size) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = "<memory>";
  auto owned = std::make_shared<std::vector<uint8_t>>(data, data + size);
  f->data_ = owned->data();
  f->bytes_ = std::shared_ptr<const void>(owned, owned->data());
  f->size_ = size;
  auto st = f->parse_all();
  if (!st) return st.take_error();
  return f;
}

GgufFile::~GgufFile() = default;

namespace {
// Bytes of the mapping that starts at `start` reached through 2 MiB page-table entries
// (FilePmdMapped of its /proc/self/smaps entry), 0 if unknown.
uint64_t pmd_mapped_bytes(const void* start) {
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (!f) return 0;
  char prefix[32], line[256];
  std::snprintf(prefix, sizeof prefix, "%lx-", static_cast<unsigned long>(reinterpret_cast<uintptr_t>(start)));
  bool in = false;
  unsigned long long kib = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (!in) {
      in = std::strncmp(line, prefix, std::strlen(prefix)) == 0;
    } else if (std::sscanf(line, "FilePmdMapped: %llu kB", &kib) == 1) {
      break;
    }
  }
  std::fclose(f);
  return uint64_t(kib) * 1024;
}
}  // namespace

double GgufFile::huge_page_share() const {
  if (!mapped_ || size_ == 0) return 0;
  const size_t n = size_t(size_);
  volatile uint8_t sink = 0;
  for (size_t off = 0; off < n; off += kHugePage) sink = uint8_t(sink + data_[off]);
  const size_t whole = n / kHugePage * kHugePage;  // a partial last 2 MiB cannot be a huge page
  return whole ? std::min(1.0, double(pmd_mapped_bytes(data_)) / double(whole)) : 0.0;
}

bool GgufFile::prefer_huge_pages() {
  // Below 64 MiB the TLB reaches most of the file anyway: not worth a re-read.
  if (!mapped_ || size_ < (uint64_t(64) << 20)) return false;
  if (huge_page_share() >= 0.9) return true;
  // The page cache holds the file in small folios (as it does after the file was written): drop
  // this mapping's pages and the file's clean cached ones, so that the reads through this mapping,
  // advised for huge pages, bring the file back in 2 MiB folios. One read of the file now; huge
  // pages for this load and every later one while the file stays cached. (Dirty pages of a file
  // still being written back are not dropped, and stay small.)
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  madvise(const_cast<uint8_t*>(data_), size_t(size_), MADV_DONTNEED);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return huge_page_share() >= 0.9;
}

void GgufFile::drop_pages(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(b) + page - 1) / page * page, hi = reinterpret_cast<uintptr_t>(b + n) / page * page;
  if (lo < hi) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

Status GgufFile::parse_all() {
  Cursor c(data_, size_);
  auto magic = c.read<uint32_t>("magic");
  if (!magic) return magic.take_error();
  if (std::memcmp(data_, "GGUF", 4) != 0) return make_error("not a GGUF file (bad magic at offset 0)");
  auto ver = c.read<uint32_t>("version");
  if (!ver) return ver.take_error();
  if (*ver != 3 && *ver != 2)
    return make_error("unsupported GGUF version " + std::to_string(*ver) + " at offset 4 (need 2 or 3)");
  version_ = *ver;
  auto n_tensors = c.read<uint64_t>("tensor count");
  if (!n_tensors) return n_tensors.take_error();
  auto n_kv = c.read<uint64_t>("metadata count");
  if (!n_kv) return n_kv.take_error();
  // Each tensor info needs >= 8+4+8+4+8 bytes; each kv >= 8+4+1.
  if (*n_tensors > c.remaining() / 32)
    return make_error("tensor count " + std::to_string(*n_tensors) + " at offset 8 exceeds what the file can hold");
  if (*n_kv > c.remaining() / 13)
    return make_error("metadata count " + std::to_string(*n_kv) + " at offset 16 exceeds what the file can hold");

  for (uint64_t i = 0; i < *n_kv; ++i) {
    auto key = c.read_string("metadata key");
    if (!key) return key.take_error();
    const uint64_t tpos = c.pos();
    auto type = c.read<uint32_t>("metadata value type");
    if (!type) return type.take_error();
    if (*type > uint32_t(GgufValueType::F64))
      return make_error("unknown metadata value type " + std::to_string(*type) + " for '" + *key + "'" + at(tpos));
    auto val = read_value(c, GgufValueType(*type), *key, 0);
    if (!val) return val.take_error();
    if (kv_.count(*key)) return make_error("duplicate metadata key '" + *key + "'" + at(tpos));
    kv_.emplace(std::move(*key), std::move(*val));
  }

  if (auto* a = find("general.alignment")) {
    auto v = a->as_int();
    if (!v || *v <= 0 || *v > (1 << 20) || (*v & (*v - 1)) != 0)
      return make_error("general.alignment must be a power of two up to 1 MiB");
    alignment_ = uint64_t(*v);
  }

  tensors_.reserve(*n_tensors);
  for (uint64_t i = 0; i < *n_tensors; ++i) {
    const uint64_t start = c.pos();
    GgufTensorInfo t;
    auto name = c.read_string("tensor name");
    if (!name) return name.take_error();
    t.name = std::move(*name);
    auto nd = c.read<uint32_t>("tensor dimension count");
    if (!nd) return nd.take_error();
    if (*nd == 0 || *nd > kMaxDims)
      return make_error("tensor '" + t.name + "' has " + std::to_string(*nd) + " dimensions (1..4 allowed)" + at(start));
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < *nd; ++d) {
      auto dim = c.read<uint64_t>("tensor dimension");
      if (!dim) return dim.take_error();
      if (*dim == 0 || *dim > (1ull << 40) || n_elem > (1ull << 62) / *dim)
        return make_error("tensor '" + t.name + "' dimension " + std::to_string(d) + " = " + std::to_string(*dim) + " is out of range" + at(start));
      n_elem *= *dim;
      t.dims.push_back(*dim);
    }
    auto ty = c.read<uint32_t>("tensor type");
    if (!ty) return ty.take_error();
    if (!ggml_type_known(*ty))
      return make_error("tensor '" + t.name + "' has unsupported type code " + std::to_string(*ty) + at(start));
    t.type = GgmlType(*ty);
    auto off = c.read<uint64_t>("tensor offset");
    if (!off) return off.take_error();
    t.offset = *off;
    if (t.offset % alignment_ != 0)
      return make_error("tensor '" + t.name + "' offset " + std::to_string(t.offset) + " is not aligned to " + std::to_string(alignment_) + at(start));
    auto rb = ggml_row_bytes(t.type, t.dims[0]);
    if (!rb) return make_error("tensor '" + t.name + "' row length " + std::to_string(t.dims[0]) + " is not a multiple of the " + ggml_type_name(t.type) + " block" + at(start));
    const uint64_t rows = n_elem / t.dims[0];
    if (rows > 0 && *rb > UINT64_MAX / rows) return make_error("tensor '" + t.name + "' size overflows" + at(start));
    t.n_bytes = *rb * rows;
    if (tensor_index_.count(t.name)) return make_error("duplicate tensor name '" + t.name + "'" + at(start));
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_offset_ > size_ && !tensors_.empty())
    return make_error("data section at offset " + std::to_string(data_offset_) + " lies past the end of the file (" + std::to_string(size_) + " bytes)");
  const uint64_t data_size = size_ >= data_offset_ ? size_ - data_offset_ : 0;
  for (const auto& t : tensors_) {
    if (t.offset > data_size || t.n_bytes > data_size - t.offset)
      return make_error("tensor '" + t.name + "' extent [" + std::to_string(data_offset_ + t.offset) + ", +" +
                        std::to_string(t.n_bytes) + ") runs past the end of the file (" + std::to_string(size_) + " bytes)");
  }
  return {};
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<int64_t> GgufFile::get_int(const std::string& key) const {
  const auto* v = find(key);
  if (!v) return make_error("missing metadata key '" + key + "'");
  auto i = v->as_int();
  if (!i) return make_error("metadata key '" + key + "' is not an integer");
  return *i;
}

Result<double> GgufFile::get_float(const std::string& key) const {
  const auto* v = find(key);
  if (!v) return make_error("missing metadata key '" + key + "'");
  auto f = v->as_float();
  if (!f) return make_error("metadata key '" + key + "' is not a number");
  return *f;
}

Result<std::string> GgufFile::get_string(const std::string& key) const {
  const auto* v = find(key);
  if (!v) return make_error("missing metadata key '" + key + "'");
  const auto* s = v->as_string();
  if (!s) return make_error("metadata key '" + key + "' is not a string");
  return *s;
}

int64_t GgufFile::get_int_or(const std::string& key, int64_t dflt) const {
  auto r = get_int(key);
  return r ? *r : dflt;
}

double GgufFile::get_float_or(const std::string& key, double dflt) const {
  auto r = get_float(key);
  return r ? *r : dflt;
}

}  // namespace pagoda
