// Chat messages -> prompt tokens. GGUF files carry a Jinja chat template; rather than embed a Jinja
// interpreter, a few widespread formats are recognized by their marker strings and rendered by
// hand. Anything else gets a plain "role: content" transcript, which base models continue well.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "apps/server/request_parse.h"
#include "core/tokenizer/tokenizer.h"

namespace pagoda::server {

enum class ChatFormat : uint8_t { Plain, ChatML, Llama2, Llama3 };
const char* chat_format_name(ChatFormat f);
ChatFormat detect_chat_format(const std::string& jinja_template);

// A rendered chat: text runs and special-token markers kept apart, so a marker such as
// "<|im_start|>" becomes its one vocabulary id instead of being spelled out as ordinary text.
struct ChatPiece {
  std::string text;
  bool special = false;
};
std::vector<ChatPiece> render_chat(ChatFormat f, const std::vector<ChatMessage>& messages);
std::string chat_text(const std::vector<ChatPiece>& pieces);  // for logs and tests

class ChatRenderer {
 public:
  // Resolves the format's special markers against the vocabulary once, up front.
  ChatRenderer(const Tokenizer& tok, const std::string& jinja_template);
  ChatFormat format() const { return format_; }
  // BOS (when the vocabulary has one) + the rendered chat ending where the assistant speaks next.
  std::vector<int32_t> tokenize(const std::vector<ChatMessage>& messages) const;

 private:
  const Tokenizer& tok_;
  ChatFormat format_;
  std::map<std::string, int32_t> special_;  // marker text -> token id (absent: encode as text)
};

}  // namespace pagoda::server
