#include "apps/server/chat_template.h"

#include <algorithm>

namespace pagoda::server {
namespace {

std::vector<std::string> markers_of(ChatFormat f) {
  switch (f) {
    case ChatFormat::ChatML: return {"<|im_start|>", "<|im_end|>"};
    case ChatFormat::Llama2: return {"<s>", "</s>"};
    case ChatFormat::Llama3: return {"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    case ChatFormat::Plain:
    case ChatFormat::Jinja: break;
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

// The hand-written formats read role and text content only.
std::vector<ChatMessage> typed_messages(const nlohmann::ordered_json& messages) {
  std::vector<ChatMessage> out;
  for (const auto& m : messages) {
    if (!m.is_object()) continue;
    const auto role = m.find("role");
    const auto content = m.find("content");
    out.push_back({role != m.end() && role->is_string() ? role->get<std::string>() : "",
                   content != m.end() && content->is_string() ? content->get<std::string>() : ""});
  }
  return out;
}

}  // namespace

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::Plain: return "plain";
    case ChatFormat::ChatML: return "chatml";
    case ChatFormat::Llama2: return "llama2";
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::Jinja: return "jinja";
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
    case ChatFormat::Plain:
    case ChatFormat::Jinja: break;
  }
  return render_plain(msgs);
}

std::string chat_text(const std::vector<ChatPiece>& pieces) {
  std::string s;
  for (const auto& p : pieces) s += p.text;
  return s;
}

ChatRenderer::ChatRenderer(const Tokenizer& tok, const std::string& tmpl) : tok_(tok), format_(detect_chat_format(tmpl)) {
  specials_by_byte_.resize(256);
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string& p = tok.piece(id);
    if (tok.is_special(id) && !p.empty()) specials_by_byte_[static_cast<unsigned char>(p[0])].emplace_back(p, id);
  }
  for (auto& v : specials_by_byte_)
    std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  if (!tmpl.empty()) {
    auto t = ChatTemplate::parse(tmpl);
    if (t) template_ = std::move(*t);
    else template_error_ = "the model's chat template does not parse: " + t.error();
    format_ = ChatFormat::Jinja;
    return;
  }
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

std::vector<int32_t> ChatRenderer::encode_with_specials(const std::string& text) const {
  std::vector<int32_t> ids;
  size_t run = 0;  // start of the ordinary text not yet encoded
  auto flush = [&](size_t end) {
    if (end > run) {
      const auto t = tok_.encode(std::string_view(text).substr(run, end - run), false);
      ids.insert(ids.end(), t.begin(), t.end());
    }
  };
  for (size_t i = 0; i < text.size();) {
    const auto& cands = specials_by_byte_[static_cast<unsigned char>(text[i])];
    const auto hit = std::find_if(cands.begin(), cands.end(), [&](const auto& c) { return text.compare(i, c.first.size(), c.first) == 0; });
    if (hit == cands.end()) {
      ++i;
      continue;
    }
    flush(i);
    ids.push_back(hit->second);
    i += hit->first.size();
    run = i;
  }
  flush(text.size());
  return ids;
}

Result<std::string> ChatRenderer::render_text(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) const {
  if (!template_error_.empty()) return make_error(template_error_);
  if (!template_) {
    const std::vector<ChatMessage> msgs = typed_messages(messages);
    return chat_text(render_chat(format_, msgs));
  }
  nlohmann::ordered_json vars = nlohmann::ordered_json::object();
  vars["messages"] = messages;
  if (!tools.is_null()) vars["tools"] = tools;
  vars["add_generation_prompt"] = true;
  vars["bos_token"] = tok_.bos() >= 0 ? tok_.piece(tok_.bos()) : "";
  vars["eos_token"] = tok_.eos() >= 0 ? tok_.piece(tok_.eos()) : "";
  return template_->render(vars);
}

Result<std::vector<int32_t>> ChatRenderer::apply(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) const {
  if (!template_ && template_error_.empty()) {
    const std::vector<ChatMessage> msgs = typed_messages(messages);
    return tokenize(msgs);
  }
  auto text = render_text(messages, tools);
  if (!text) return make_error("chat template: " + text.error());
  std::vector<int32_t> ids = encode_with_specials(*text);
  // Templates that write {{ bos_token }} themselves get no second one.
  if (tok_.bos() >= 0 && tok_.add_bos() && (ids.empty() || ids[0] != tok_.bos())) ids.insert(ids.begin(), tok_.bos());
  return ids;
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
