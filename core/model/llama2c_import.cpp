#include "core/model/llama2c_import.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "core/gguf/gguf_writer.h"

namespace pagoda {
namespace {

Result<std::vector<uint8_t>> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error("cannot open '" + path + "'");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

struct Vocab {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
};

// llama2.c's exporter wrote SentencePiece's U+2581 as a plain space; GGUF keeps U+2581.
std::string replace_spaces(const std::string& p) {
  std::string out;
  for (char c : p) {
    if (c == ' ') out += "\xE2\x96\x81";
    else out += c;
  }
  return out;
}

// llama2.c tokenizer: int32 max_len, then per token: float score, int32 len, bytes.
Result<Vocab> read_vocab(const std::string& path, int32_t vocab) {
  auto data = read_all(path);
  if (!data) return data.take_error();
  const auto& d = *data;
  size_t p = 4;
  if (d.size() < 4) return make_error("tokenizer '" + path + "' is truncated");
  Vocab v;
  for (int32_t i = 0; i < vocab; ++i) {
    float score;
    int32_t len;
    if (p + 8 > d.size()) return make_error("tokenizer '" + path + "' ends at token " + std::to_string(i) + " of " + std::to_string(vocab));
    std::memcpy(&score, &d[p], 4);
    std::memcpy(&len, &d[p + 4], 4);
    p += 8;
    if (len < 0 || size_t(len) > d.size() - p) return make_error("tokenizer '" + path + "': bad length for token " + std::to_string(i) + " at offset " + std::to_string(p - 4));
    std::string piece(reinterpret_cast<const char*>(&d[p]), size_t(len));
    p += size_t(len);
    // llama2.c spells the control tokens with newlines around them; GGUF uses the bare names.
    int32_t type = 1;
    if (piece == "\n<s>\n") { piece = "<s>"; type = 3; }
    else if (piece == "\n</s>\n") { piece = "</s>"; type = 3; }
    else if (piece == "<unk>") type = 2;
    else if (piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece[5] == '>') type = 6;
    else piece = replace_spaces(piece);
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(score);
    v.types.push_back(type);
  }
  return v;
}

std::vector<uint8_t> f32_bytes(const float* p, size_t n) {
  std::vector<uint8_t> out(n * 4);
  std::memcpy(out.data(), p, n * 4);
  return out;
}

}  // namespace

Status import_llama2c(const Llama2cImportOptions& opt) {
  auto data = read_all(opt.checkpoint);
  if (!data) return data.take_error();
  if (data->size() < 28) return make_error("checkpoint '" + opt.checkpoint + "' is shorter than its 28-byte header");
  int32_t h[7];
  std::memcpy(h, data->data(), 28);
  const int32_t dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3], n_kv = h[4], seq_len = h[6];
  const bool shared = h[5] > 0;
  // (Negated in 64 bits: a header of INT32_MIN must be an error, not an overflow.)
  const int64_t vocab64 = shared ? int64_t(h[5]) : -int64_t(h[5]);
  if (dim <= 0 || hidden <= 0 || n_layers <= 0 || n_heads <= 0 || n_kv <= 0 || vocab64 <= 0 || seq_len <= 0 ||
      dim > 65536 || hidden > 1 << 18 || n_layers > 1024 || vocab64 > 1 << 22 || seq_len > 1 << 24 ||
      dim % n_heads != 0 || n_heads % n_kv != 0)
    return make_error("checkpoint '" + opt.checkpoint + "' has an invalid header");
  const int32_t vocab = int32_t(vocab64);
  const int64_t head = dim / n_heads, kv_dim = head * n_kv;
  const int64_t L = n_layers;
  // Float counts of each tensor group, in file order.
  const int64_t counts[] = {int64_t(vocab) * dim, L * dim, L * dim * dim, L * dim * kv_dim, L * dim * kv_dim,
                            L * dim * dim, L * dim, L * dim * hidden, L * hidden * dim, L * dim * hidden, dim,
                            int64_t(seq_len) * head / 2, int64_t(seq_len) * head / 2, shared ? 0 : int64_t(vocab) * dim};
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (uint64_t(total) * 4 + 28 > data->size())
    return make_error("checkpoint '" + opt.checkpoint + "' is truncated: header promises " + std::to_string(total * 4 + 28) +
                      " bytes, file has " + std::to_string(data->size()));
  auto vocab_r = read_vocab(opt.tokenizer, vocab);
  if (!vocab_r) return vocab_r.take_error();

  const float* ptr = reinterpret_cast<const float*>(data->data() + 28);
  std::vector<const float*> group;
  for (int64_t c : counts) { group.push_back(ptr); ptr += c; }

  GgufWriter w;
  w.set_string("general.architecture", "llama");
  std::string name = opt.name;
  if (name.empty()) name = opt.checkpoint.substr(opt.checkpoint.find_last_of('/') + 1);
  w.set_string("general.name", name);
  w.set_u32("llama.context_length", uint32_t(seq_len));
  w.set_u32("llama.embedding_length", uint32_t(dim));
  w.set_u32("llama.feed_forward_length", uint32_t(hidden));
  w.set_u32("llama.block_count", uint32_t(n_layers));
  w.set_u32("llama.attention.head_count", uint32_t(n_heads));
  w.set_u32("llama.attention.head_count_kv", uint32_t(n_kv));
  w.set_u32("llama.rope.dimension_count", uint32_t(head));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", vocab_r->pieces);
  w.set_f32_array("tokenizer.ggml.scores", vocab_r->scores);
  w.set_i32_array("tokenizer.ggml.token_type", vocab_r->types);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);

  auto add = [&](const std::string& n, const float* p, uint64_t cols, uint64_t rows) {
    w.add_tensor(n, GgmlType::F32, rows > 1 ? std::vector<uint64_t>{cols, rows} : std::vector<uint64_t>{cols},
                 f32_bytes(p, cols * rows));
  };
  add("token_embd.weight", group[0], uint64_t(dim), uint64_t(vocab));
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", group[1] + l * dim, uint64_t(dim), 1);
    add(p + "attn_q.weight", group[2] + l * dim * dim, uint64_t(dim), uint64_t(dim));
    add(p + "attn_k.weight", group[3] + l * dim * kv_dim, uint64_t(dim), uint64_t(kv_dim));
    add(p + "attn_v.weight", group[4] + l * dim * kv_dim, uint64_t(dim), uint64_t(kv_dim));
    add(p + "attn_output.weight", group[5] + l * dim * dim, uint64_t(dim), uint64_t(dim));
    add(p + "ffn_norm.weight", group[6] + l * dim, uint64_t(dim), 1);
    add(p + "ffn_gate.weight", group[7] + l * dim * hidden, uint64_t(dim), uint64_t(hidden));
    add(p + "ffn_down.weight", group[8] + l * hidden * dim, uint64_t(hidden), uint64_t(dim));
    add(p + "ffn_up.weight", group[9] + l * dim * hidden, uint64_t(dim), uint64_t(hidden));
  }
  add("output_norm.weight", group[10], uint64_t(dim), 1);
  if (!shared) add("output.weight", group[13], uint64_t(dim), uint64_t(vocab));
  return w.write(opt.output);
}

}  // namespace pagoda
