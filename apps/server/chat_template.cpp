#include "apps/server/chat_template.h"

namespace pagoda::server {
namespace {

std::vector<std::string> markers_of(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML: return {"<|im_start|>", "<|im_end|>"};
    case ChatFormat::Llama2: return {"<s>", "</s>"};
    case ChatFormat::Llama3: return {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    case ChatFormat::Plain: break;
  }
  return {};
}

void text(std::vector<ChatPiece>& out, std::string s) { out.push_back({std::move(s), false}); }
void special(std::vector<ChatPiece>& out, const char* s) { out.push_back({s, true}); }

std::vector<ChatPiece> render_plain(const std::vector<ChatMessage>& msgs) {
  std::string s;
  for (const auto& m : msgs) s += m.role + ": " + m.content + "\n";
  s += "assistant:";
  return {{s, false}};
}

std::vector<ChatPiece> render_chatml(const std::vector<ChatMessage>& msgs) {
  std::vector<ChatPiece> out;
  for (const auto& m : msgs) {
    special(out, "<|im_start|>");
    text(out, m.role + "\n" + m.content);
    special(out, "<|im_end|>");
    text(out, "\n");
  }
  special(out, "<|im_start|>");
  text(out, "assistant\n");
  return out;
}

// Llama 2: the system prompt rides inside the first [INST] block; each finished exchange is closed
// by </s> and the next opened by <s> (the very first <s> is the BOS the tokenizer adds).
std::vector<ChatPiece> render_llama2(const std::vector<ChatMessage>& msgs) {
  std::vector<ChatPiece> out;
  std::string system, pending;
  bool open = false;  // an [INST] block awaits the assistant's answer
  for (const auto& m : msgs) {
    if (m.role == "system") {
      system += (system.empty() ? "" : "\n") + m.content;
    } else if (m.role == "user") {
      std::string sys = system.empty() ? "" : "<<SYS>>\n" + system + "\n<</SYS>>\n\n";
      system.clear();
      if (open) pending += ' ';
      pending += "[INST] ";
      pending += sys;
      pending += m.content;
      pending += " [/INST]";
      open = true;
    } else {  // assistant
      text(out, pending + " " + m.content + " ");
      pending.clear();
      special(out, "</s>");
      special(out, "<s>");
      open = false;
    }
  }
  if (!system.empty()) pending += "[INST] <<SYS>>\n" + system + "\n<</SYS>>\n\n [/INST]";
  text(out, pending);
  return out;
}

std::vector<ChatPiece> render_llama3(const std::vector<ChatMessage>& msgs) {
  std::vector<ChatPiece> out;
  for (const auto& m : msgs) {
    special(out, "<|start_header_id|>");
    text(out, m.role);
    special(out, "<|end_header_id|>");
    text(out, "\n\n" + m.content);
    special(out, "<|eot_id|>");
  }
  special(out, "<|start_header_id|>");
  text(out, "assistant");
  special(out, "<|end_header_id|>");
  text(out, "\n\n");
  return out;
}

}  // namespace

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::Plain: return "plain";
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Llama2: return "llama2";
    case ChatFormat::Llama3: return "llama3";
  }
  return "plain";
}

ChatFormat detect_chat_format(const std::string& t) {
  // Most specific markers first: a Llama 3 template may mention neither of the others.
  if (t.find("<|start_header_id|>") != std::string::npos) return ChatFormat::Llama3;
  if (t.find("<|im_start|>") != std::string::npos) return ChatFormat::ChatML;
  if (t.find("[INST]") != std::string::npos) return ChatFormat::Llama2;
  return ChatFormat::Plain;
}

std::vector<ChatPiece> render_chat(ChatFormat f, const std::vector<ChatMessage>& msgs) {
  switch (f) {
    case ChatFormat::ChatML: return render_chatml(msgs);
    case ChatFormat::Llama2: return render_llama2(msgs);
    case ChatFormat::Llama3: return render_llama3(msgs);
    case ChatFormat::Plain: break;
  }
  return render_plain(msgs);
}

std::string chat_text(const std::vector<ChatPiece>& pieces) {
  std::string s;
  for (const auto& p : pieces) s += p.text;
  return s;
}

ChatRenderer::ChatRenderer(const Tokenizer& tok, const std::string& tmpl) : tok_(tok), format_(detect_chat_format(tmpl)) {
  const auto wanted = markers_of(format_);
  if (wanted.empty()) return;
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    for (const auto& w : wanted)
      if (!special_.count(w) && tok.piece(id) == w) special_[w] = id;
  if (format_ == ChatFormat::Llama2) {  // <s>/</s> are whatever the file says BOS/EOS are
    if (tok.bos() >= 0) special_["<s>"] = tok.bos();
    if (tok.eos() >= 0) special_["</s>"] = tok.eos();
  }
}

std::vector<int32_t> ChatRenderer::tokenize(const std::vector<ChatMessage>& msgs) const {
  std::vector<int32_t> ids;
  if (tok_.bos() >= 0) ids.push_back(tok_.bos());
  for (const auto& p : render_chat(format_, msgs)) {
    if (p.special) {
      if (auto it = special_.find(p.text); it != special_.end()) {
        ids.push_back(it->second);
        continue;
      }
    }
    if (p.text.empty()) continue;
    const auto t = tok_.encode(p.text, false);
    ids.insert(ids.end(), t.begin(), t.end());
  }
  return ids;
}

}  // namespace pagoda::server
