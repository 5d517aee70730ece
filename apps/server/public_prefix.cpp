#include "apps/server/public_prefix.h"
#include "core/util/file.h"

#include <algorithm>
#include <fstream>
#include <sstream>

namespace pagoda::server {
namespace {

// Continuations that start with different kinds of characters (digit, punctuation, letters of
// both cases, space, newline): whatever a tenant writes next, one of them tokenizes differently.
const char* const kContinuations[] = {"1", "?", "a", "Z", " x", "\n"};

void keep_common(std::vector<int32_t>& acc, const std::vector<int32_t>& other, bool first) {
  if (first) {
    acc = other;
    return;
  }
  const auto mismatch = std::mismatch(acc.begin(), acc.end(), other.begin(), other.end());
  acc.erase(mismatch.first, acc.end());
}

}  // namespace

std::vector<std::vector<int32_t>> public_prefix_tokens(const std::string& text, const Tokenizer& tok, const ChatRenderer& chat) {
  std::vector<int32_t> completion, chat_prefix;
  bool first = true, chat_ok = true;
  for (const char* c : kContinuations) {
    keep_common(completion, tok.encode(text + c, true), first);
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    messages.push_back({{"role", "system"}, {"content", text}});
    messages.push_back({{"role", "user"}, {"content", c}});
    auto ids = chat.apply(messages, nullptr);
    if (!ids) chat_ok = false;  // a template that refuses a system message: completions only
    else keep_common(chat_prefix, *ids, first);
    first = false;
  }
  std::vector<std::vector<int32_t>> out;
  if (!completion.empty()) out.push_back(std::move(completion));
  if (chat_ok && !chat_prefix.empty() && (out.empty() || chat_prefix != out.front())) out.push_back(std::move(chat_prefix));
  return out;
}

Status add_public_prefixes(const std::vector<std::string>& files, const Tokenizer& tok, const std::string& chat_template,
                           EngineConfig& cfg) {
  if (files.empty()) return {};
  const ChatRenderer chat(tok, chat_template);
  for (const auto& path : files) {
    auto read = read_file(path);
    if (!read) return make_error("public-prefix: " + read.error());
    std::string text = std::move(*read);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.empty()) return make_error("public-prefix: '" + path + "' is empty");
    for (auto& p : public_prefix_tokens(text, tok, chat)) cfg.public_prefixes.push_back(std::move(p));
  }
  return {};
}

}  // namespace pagoda::server
