#include "core/gguf/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <memory>

namespace pagoda {
namespace {

// resize + memcpy rather than insert(): GCC 12 reports a false -Wstringop-overflow for the latter.
void append_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  if (n == 0) return;
  const size_t at = out.size();
  out.resize(at + n);
  std::memcpy(out.data() + at, p, n);
}

template <typename T>
void append(std::vector<uint8_t>& out, T v) {
  append_bytes(out, &v, sizeof(T));
}

void append_string(std::vector<uint8_t>& out, const std::string& s) {
  append<uint64_t>(out, s.size());
  append_bytes(out, s.data(), s.size());
}

std::vector<uint8_t> typed(GgufValueType t) {
  std::vector<uint8_t> out;
  append<uint32_t>(out, uint32_t(t));
  return out;
}

}  // namespace

void GgufWriter::put(const std::string& key, std::vector<uint8_t> encoded) {
  for (auto& kv : kvs_) {
    if (kv.key == key) { kv.encoded = std::move(encoded); return; }
  }
  kvs_.push_back({key, std::move(encoded)});
}

void GgufWriter::set_u32(const std::string& k, uint32_t v) { auto e = typed(GgufValueType::U32); append(e, v); put(k, std::move(e)); }
void GgufWriter::set_i32(const std::string& k, int32_t v) { auto e = typed(GgufValueType::I32); append(e, v); put(k, std::move(e)); }
void GgufWriter::set_u64(const std::string& k, uint64_t v) { auto e = typed(GgufValueType::U64); append(e, v); put(k, std::move(e)); }
void GgufWriter::set_f32(const std::string& k, float v) { auto e = typed(GgufValueType::F32); append(e, v); put(k, std::move(e)); }
void GgufWriter::set_bool(const std::string& k, bool v) { auto e = typed(GgufValueType::BOOL); append<uint8_t>(e, v ? 1 : 0); put(k, std::move(e)); }
void GgufWriter::set_string(const std::string& k, const std::string& v) { auto e = typed(GgufValueType::STRING); append_string(e, v); put(k, std::move(e)); }

void GgufWriter::set_string_array(const std::string& k, const std::vector<std::string>& v) {
  auto e = typed(GgufValueType::ARRAY);
  append<uint32_t>(e, uint32_t(GgufValueType::STRING));
  append<uint64_t>(e, v.size());
  for (const auto& s : v) append_string(e, s);
  put(k, std::move(e));
}

void GgufWriter::set_f32_array(const std::string& k, const std::vector<float>& v) {
  auto e = typed(GgufValueType::ARRAY);
  append<uint32_t>(e, uint32_t(GgufValueType::F32));
  append<uint64_t>(e, v.size());
  for (float f : v) append(e, f);
  put(k, std::move(e));
}

void GgufWriter::set_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  auto e = typed(GgufValueType::ARRAY);
  append<uint32_t>(e, uint32_t(GgufValueType::I32));
  append<uint64_t>(e, v.size());
  for (int32_t i : v) append(e, i);
  put(k, std::move(e));
}

static void encode_value(std::vector<uint8_t>& e, const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::U8: append<uint8_t>(e, uint8_t(*v.as_int())); break;
    case GgufValueType::I8: append<int8_t>(e, int8_t(*v.as_int())); break;
    case GgufValueType::U16: append<uint16_t>(e, uint16_t(*v.as_int())); break;
    case GgufValueType::I16: append<int16_t>(e, int16_t(*v.as_int())); break;
    case GgufValueType::U32: append<uint32_t>(e, uint32_t(*v.as_int())); break;
    case GgufValueType::I32: append<int32_t>(e, int32_t(*v.as_int())); break;
    case GgufValueType::U64: append<uint64_t>(e, std::get<uint64_t>(v.v)); break;
    case GgufValueType::I64: append<int64_t>(e, *v.as_int()); break;
    case GgufValueType::F32: append<float>(e, float(*v.as_float())); break;
    case GgufValueType::F64: append<double>(e, *v.as_float()); break;
    case GgufValueType::BOOL: append<uint8_t>(e, std::get<bool>(v.v) ? 1 : 0); break;
    case GgufValueType::STRING: append_string(e, *v.as_string()); break;
    case GgufValueType::ARRAY: {
      const GgufArray* a = v.as_array();
      append<uint32_t>(e, uint32_t(a->elem_type));
      append<uint64_t>(e, a->items.size());
      for (const auto& item : a->items) encode_value(e, item);
      break;
    }
  }
}

void GgufWriter::set_value(const std::string& k, const GgufValue& v) {
  auto e = typed(v.type);
  encode_value(e, v);
  put(k, std::move(e));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<uint64_t> dims,
                            std::vector<uint8_t> data) {
  tensors_.push_back({name, type, std::move(dims), std::move(data)});
}

Status GgufWriter::write(const std::string& path, uint32_t alignment) const {
  std::vector<uint8_t> head;
  append_bytes(head, "GGUF", 4);
  append<uint32_t>(head, 3);
  append<uint64_t>(head, tensors_.size());
  const bool has_align = alignment != 32;
  append<uint64_t>(head, kvs_.size() + (has_align ? 1 : 0));
  for (const auto& kv : kvs_) {
    append_string(head, kv.key);
    append_bytes(head, kv.encoded.data(), kv.encoded.size());
  }
  if (has_align) {
    append_string(head, "general.alignment");
    append<uint32_t>(head, uint32_t(GgufValueType::U32));
    append<uint32_t>(head, alignment);
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const auto& t : tensors_) {
    const uint64_t n = [&] { uint64_t x = 1; for (auto d : t.dims) x *= d; return x; }();
    auto rb = ggml_row_bytes(t.type, t.dims.empty() ? 0 : t.dims[0]);
    if (t.dims.empty() || !rb || *rb * (n / t.dims[0]) != t.data.size())
      return make_error("tensor '" + t.name + "' data size does not match its type and shape");
    append_string(head, t.name);
    append<uint32_t>(head, uint32_t(t.dims.size()));
    for (auto d : t.dims) append<uint64_t>(head, d);
    append<uint32_t>(head, uint32_t(t.type));
    append<uint64_t>(head, offset);
    offsets.push_back(offset);
    offset += (t.data.size() + alignment - 1) / alignment * alignment;
  }
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return make_error("cannot write '" + path + "': " + std::strerror(errno));
  const uint64_t data_start = (head.size() + alignment - 1) / alignment * alignment;
  head.resize(data_start, 0);
  bool ok = std::fwrite(head.data(), 1, head.size(), f.get()) == head.size();
  const std::vector<uint8_t> zeros(alignment, 0);
  for (const auto& t : tensors_) {
    ok = ok && std::fwrite(t.data.data(), 1, t.data.size(), f.get()) == t.data.size();
    const uint64_t pad = (alignment - t.data.size() % alignment) % alignment;
    ok = ok && std::fwrite(zeros.data(), 1, pad, f.get()) == pad;
  }
  if (!ok) return make_error("short write to '" + path + "'");
  return {};
}

}  // namespace pagoda
