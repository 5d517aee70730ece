// A tiny llama GGUF whose output is fixed by construction: a model that always calls a tool, so
// tests see real tool calls come out of the engine and the server (server_tools_test, and the OpenAI
// SDK test through openai_sdk_tool_model).
//
// Attention and FFN outputs are zero, so the last hidden state is the current token's embedding,
// and output.weight maps each token to the next one: any prompt token -> "<tool_call>" -> the call's
// JSON pieces -> "</tool_call>" -> EOS, i.e. the text
//   <tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call>
// Logit gaps are ~28, so sampling at any usual temperature gives the same text. The vocabulary's
// pieces are the call's text; `chat_template` (may be empty) goes into the file so `tools` are
// rendered as a real model would see them.
#pragma once
#include <cstring>
#include <string>
#include <vector>

#include "core/gguf/gguf_writer.h"

namespace pagoda::testing {

inline std::vector<uint8_t> tool_model_f32(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

inline Status write_tool_call_model(const std::string& path, const std::string& chat_template) {
  constexpr int kDim = 8, kFfn = 16, kHeads = 2;
  // A [rows x cols] F32 matrix (ne[0] = cols): `data` row by row, or zeros.
  auto add_matrix = [](GgufWriter& w, const std::string& name, int rows, int cols, const std::vector<float>& data = {}) {
    std::vector<float> m = data.empty() ? std::vector<float>(size_t(rows) * size_t(cols), 0.0f) : data;
    w.add_tensor(name, GgmlType::F32, {uint64_t(cols), uint64_t(rows)}, tool_model_f32(m));
  };
  const std::string sp = "\u2581";  // SentencePiece's space
  const std::vector<std::string> chain = {
      "<tool_call>",
      "{\"name\":" + sp + "\"get_weather\"," + sp,
      "\"arguments\":" + sp + "{\"city\":" + sp + "\"Paris\"," + sp,
      "\"unit\":" + sp + "\"celsius\"}}",
      "</tool_call>",
  };
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (const auto& c : chain) tokens.push_back(c), types.push_back(1);
  for (const std::string c : {"[", "]", ",", sp.c_str()}) tokens.push_back(c), types.push_back(1);  // other shapes can be spelled
  const int vocab = int(tokens.size());
  const int first = 3, eos = 2;

  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name", "tool-call script (constructed weights; always calls get_weather)");
  w.set_u32("llama.context_length", 4096);
  w.set_u32("llama.embedding_length", kDim);
  w.set_u32("llama.feed_forward_length", kFfn);
  w.set_u32("llama.block_count", 1);
  w.set_u32("llama.attention.head_count", kHeads);
  w.set_u32("llama.attention.head_count_kv", kHeads);
  w.set_u32("llama.rope.dimension_count", kDim / kHeads);
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", std::vector<float>(size_t(vocab), 0.0f));
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", eos);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  if (!chat_template.empty()) w.set_string("tokenizer.chat_template", chat_template);

  // Embeddings: chain token i is axis i + 1; every other token is axis 0.
  std::vector<float> emb(size_t(vocab) * kDim, 0.0f);
  for (int t = 0; t < vocab; ++t) {
    const bool in_chain = t >= first && t < first + int(chain.size());
    emb[size_t(t) * kDim + size_t(in_chain ? t - first + 1 : 0)] = 1.0f;
  }
  // Output rows: the token that follows axis a reads axis a.
  std::vector<float> out(size_t(vocab) * kDim, 0.0f);
  out[size_t(first) * kDim + 0] = 10.0f;  // anything else -> "<tool_call>"
  for (int i = 0; i + 1 < int(chain.size()); ++i) out[size_t(first + i + 1) * kDim + size_t(i + 1)] = 10.0f;
  out[size_t(eos) * kDim + chain.size()] = 10.0f;  // "</tool_call>" -> EOS

  add_matrix(w, "token_embd.weight", vocab, kDim, emb);
  const std::vector<float> ones(kDim, 1.0f);
  w.add_tensor("blk.0.attn_norm.weight", GgmlType::F32, {uint64_t(kDim)}, tool_model_f32(ones));
  for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output"}) add_matrix(w, std::string("blk.0.") + n + ".weight", kDim, kDim);
  w.add_tensor("blk.0.ffn_norm.weight", GgmlType::F32, {uint64_t(kDim)}, tool_model_f32(ones));
  add_matrix(w, "blk.0.ffn_gate.weight", kFfn, kDim);
  add_matrix(w, "blk.0.ffn_up.weight", kFfn, kDim);
  add_matrix(w, "blk.0.ffn_down.weight", kDim, kFfn);
  w.add_tensor("output_norm.weight", GgmlType::F32, {uint64_t(kDim)}, tool_model_f32(ones));
  add_matrix(w, "output.weight", vocab, kDim, out);
  return w.write(path);
}

}  // namespace pagoda::testing
