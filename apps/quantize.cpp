#include "apps/quantize.h"

#include "backends/cpu/cpu_ops.h"
#include "core/gguf/gguf_writer.h"
#include "core/model/model_weights.h"

namespace pagoda {
namespace {

struct Target {
  const char* name;
  DType main;
  uint32_t file_type;  // llama.cpp's general.file_type code
  bool mix;            // a `_M` mix: more bits for the output and some attn_v / ffn_down
};
constexpr Target kTargets[] = {
    {"f16", DType::F16, 1, false},     {"bf16", DType::BF16, 32, false}, {"q8_0", DType::Q8_0, 7, false},
    {"q4_0", DType::Q4_0, 2, false},   {"q6_k", DType::Q6_K, 18, false}, {"q4_k_m", DType::Q4_K, 15, true},
    {"q5_k_m", DType::Q5_K, 17, true},
};

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between.
bool more_bits(int layer, int n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

int layer_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::atoi(name.c_str() + 4);
}

// The type a 2-D weight gets: the output (or a tied embedding) in Q6_K below 8 bits, mixes give
// attn_v / ffn_down Q6_K on more_bits layers; rows that are not whole blocks fall back as
// llama.cpp does (K-quants to a 32-block type, those to F16).
DType type_for(const Target& t, const std::string& name, bool tied, int n_layers, int64_t cols) {
  DType dt = t.main;
  const bool is_output = name == "output.weight" || (tied && name == "token_embd.weight");
  const bool low_bits = dt == DType::Q4_0 || dt == DType::Q4_K || dt == DType::Q5_K;
  if (is_output && low_bits) dt = DType::Q6_K;
  if (t.mix && (name.find("attn_v.weight") != std::string::npos || name.find("ffn_down.weight") != std::string::npos) &&
      more_bits(layer_of(name), n_layers))
    dt = DType::Q6_K;
  if (cols % dtype_block_elems(dt) != 0) {
    dt = dt == DType::Q4_K ? DType::Q5_0 : dt == DType::Q5_K ? DType::Q5_1 : dt == DType::Q6_K ? DType::Q8_0 : DType::F16;
    if (cols % dtype_block_elems(dt) != 0) dt = DType::F16;
  }
  return dt;
}

}  // namespace

std::vector<std::string> quantize_targets() {
  std::vector<std::string> v;
  for (const auto& t : kTargets) v.push_back(t.name);
  return v;
}

Result<QuantizeReport> quantize_model(const std::string& input, const std::string& output, const std::string& target,
                                      const std::function<void(size_t, size_t)>& progress) {
  const Target* tgt = nullptr;
  for (const auto& t : kTargets)
    if (target == t.name) tgt = &t;
  if (!tgt) return make_error("unknown quantization type '" + target + "' (f16, bf16, q8_0, q4_0, q6_k, q4_k_m, q5_k_m)");
  auto f = GgufFile::open(input);
  if (!f) return f.take_error();
  PAGODA_TRY(check_tensor_types(**f));
  auto arch = (*f)->get_string("general.architecture");
  if (!arch) return arch.take_error();
  const int n_layers = int((*f)->get_int_or(*arch + ".block_count", 0));
  const bool tied = (*f)->find_tensor("output.weight") == nullptr;

  GgufWriter w;
  for (const auto& [k, v] : (*f)->metadata())
    if (k != "general.file_type") w.set_value(k, v);
  w.set_u32("general.file_type", tgt->file_type);
  QuantizeReport rep;
  const auto& tensors = (*f)->tensors();
  std::vector<float> row;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    rep.bytes_in += t.n_bytes;
    const uint8_t* src = (*f)->tensor_data(t);
    const bool matrix = t.dims.size() == 2 && t.name != "rope_freqs.weight";
    if (!matrix) {  // norms, rope_freqs: kept as they are
      w.add_tensor(t.name, t.type, t.dims, std::vector<uint8_t>(src, src + t.n_bytes));
      rep.tensor_types[ggml_type_name(t.type)]++;
      rep.bytes_out += t.n_bytes;
      if (progress) progress(i + 1, tensors.size());
      continue;
    }
    const DType in = *dtype_from_ggml(t.type);
    const int64_t cols = int64_t(t.dims[0]), rows = int64_t(t.dims[1]);
    const DType out = type_for(*tgt, t.name, tied, n_layers, cols);
    std::vector<uint8_t> bytes(row_bytes(out, cols) * size_t(rows));
    row.resize(size_t(cols));
    for (int64_t r = 0; r < rows; ++r) {
      dequantize_row(in, src + size_t(r) * row_bytes(in, cols), row.data(), cols);
      quantize_row(out, row.data(), bytes.data() + size_t(r) * row_bytes(out, cols), cols);
    }
    const GgmlType gt = ggml_from_dtype(out);
    rep.tensor_types[ggml_type_name(gt)]++;
    rep.bytes_out += bytes.size();
    w.add_tensor(t.name, gt, t.dims, std::move(bytes));
    if (progress) progress(i + 1, tensors.size());
  }
  PAGODA_TRY(w.write(output));
  return rep;
}

}  // namespace pagoda
