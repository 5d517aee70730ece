// Chat messages -> prompt tokens. A GGUF's Jinja chat template (tokenizer.chat_template) is run by
// core/chat's interpreter; the special tokens it writes become their vocabulary ids. Files without a
// template fall back to a few formats recognized by hand, or a plain "role: content" transcript,
// which base models continue well.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/server/request_parse.h"
#include "core/chat/template.h"
#include "core/tokenizer/tokenizer.h"

namespace pagoda::server {

enum class ChatFormat : uint8_t { Plain, ChatML, Llama2, Llama3, Jinja };
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
  // Parses the template (if any) and indexes the vocabulary's special tokens once, up front.
  ChatRenderer(const Tokenizer& tok, const std::string& jinja_template);
  ChatFormat format() const { return format_; }
  // Why the file's template is unusable (a syntax error naming its line); "" when it is fine.
  const std::string& template_error() const { return template_error_; }

  // A chat request -> prompt ids: the template rendered with `messages` (OpenAI-style objects),
  // `tools` (when not null), add_generation_prompt = true and the vocabulary's BOS/EOS text.
  // A template that refuses the conversation or fails is an error naming the template line.
  Result<std::vector<int32_t>> apply(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) const;
  // The rendered prompt text (what `apply` tokenizes), for logs and tests.
  Result<std::string> render_text(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools) const;
  // The hand-written fallback formats: BOS + the chat ending where the assistant speaks next.
  std::vector<int32_t> tokenize(const std::vector<ChatMessage>& messages) const;
  // Text -> ids where every special-token spelling (<|im_start|>, <|eot_id|>, ...) becomes its id.
  std::vector<int32_t> encode_with_specials(const std::string& text) const;

 private:
  const Tokenizer& tok_;
  ChatFormat format_;
  std::optional<ChatTemplate> template_;
  std::string template_error_;
  std::map<std::string, int32_t> special_;  // marker text -> token id (absent: encode as text)
  // Control-token spellings by first byte, longest first, for encode_with_specials.
  std::vector<std::vector<std::pair<std::string, int32_t>>> specials_by_byte_;
};

}  // namespace pagoda::server
