// POST /tokenize and /detokenize in the shapes of llama.cpp's server: the model's own tokenizer,
// for clients that count tokens or build token-id prompts. Authenticated like the /v1 routes.
#include <fmt/core.h>

#include "apps/server/server_internal.h"
#include "core/tokenizer/unicode.h"

namespace pagoda::server {

namespace {

using nlohmann::json;

// A JSON body that must be an object; the error names what is wrong.
std::optional<HttpError> read_object(const std::string& body, json& out) {
  if (json_nesting_depth(body) > 32) return HttpError{400, "request body nests deeper than 32 levels", "invalid_request_error", ""};
  auto j = parse_json_strict(body);
  if (!j) return HttpError{400, "malformed JSON: " + j.error(), "invalid_request_error", ""};
  if (!j->is_object()) return HttpError{400, "request body must be a JSON object", "invalid_request_error", ""};
  out = std::move(*j);
  return std::nullopt;
}

std::optional<HttpError> read_flag(const json& body, const char* key, bool& out) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return HttpError{400, fmt::format("'{}' must be a boolean", key), "invalid_request_error", ""};
  out = it->get<bool>();
  return std::nullopt;
}

}  // namespace

std::string Server::Impl::detokenize(const std::vector<int32_t>& ids) const {
  StreamDecoder dec(engine.tokenizer());
  std::string out;
  for (int32_t id : ids) out += dec.push(id);
  return out + dec.flush();
}

void Server::Impl::route_tokenize() {
  // {"content": str, "add_special": false, "parse_special": true, "with_pieces": false}
  //   -> {"tokens": [id, ...]} or, with pieces, {"tokens": [{"id": id, "piece": str | [bytes]}]}
  transport.route("POST", "/tokenize", [this](const http::Request& req, http::Response& res) {
    if (!authenticate(req, res)) return;
    json body;
    if (auto e = read_object(req.body, body)) return send_error(res, *e);
    const auto content = body.find("content");
    if (content == body.end() || !content->is_string())
      return send_error(res, {400, "'content' must be a string", "invalid_request_error", ""});
    bool add_special = false, parse_special = true, with_pieces = false;
    const std::pair<const char*, bool*> flags[] = {{"add_special", &add_special}, {"parse_special", &parse_special},
                                                   {"with_pieces", &with_pieces}};
    for (const auto& [key, flag] : flags)
      if (auto e = read_flag(body, key, *flag)) return send_error(res, *e);
    const Tokenizer& tok = engine.tokenizer();
    const std::string& text = content->get_ref<const std::string&>();
    // parse_special: spellings of control tokens (<|im_start|>, ...) become their ids, as in a chat.
    std::vector<int32_t> ids = parse_special ? chat.encode_with_specials(text) : tok.encode(text, false);
    if (add_special && tok.bos() >= 0 && tok.add_bos()) ids.insert(ids.begin(), tok.bos());
    json tokens = json::array();
    int32_t prev = -1;
    for (int32_t id : ids) {
      if (!with_pieces) {
        tokens.push_back(id);
        continue;
      }
      // The text this token adds after the previous one; control tokens show their spelling.
      const std::string piece = tok.is_special(id) ? tok.piece(id) : tok.token_bytes(prev, id);
      prev = id;
      json bytes = json::array();
      if (!tok::utf8_valid(piece))
        for (unsigned char b : piece) bytes.push_back(int(b));
      tokens.push_back({{"id", id}, {"piece", tok::utf8_valid(piece) ? json(piece) : bytes}});
    }
    send_json(res, {{"tokens", tokens}});
  });
  // {"tokens": [id, ...]} -> {"content": str}; control tokens add no text, as in completions.
  transport.route("POST", "/detokenize", [this](const http::Request& req, http::Response& res) {
    if (!authenticate(req, res)) return;
    json body;
    if (auto e = read_object(req.body, body)) return send_error(res, *e);
    const auto tokens = body.find("tokens");
    if (tokens == body.end() || !tokens->is_array())
      return send_error(res, {400, "'tokens' must be an array of token ids", "invalid_request_error", ""});
    const int64_t vocab = engine.tokenizer().vocab_size();
    std::vector<int32_t> ids;
    for (const auto& t : *tokens) {
      const bool in_range = t.is_number_unsigned() ? t.get<uint64_t>() < uint64_t(vocab)
                                                   : t.is_number_integer() && t.get<int64_t>() >= 0 && t.get<int64_t>() < vocab;
      if (!in_range)
        return send_error(res, {400, fmt::format("'tokens' must hold token ids in 0..{}", vocab - 1), "invalid_request_error", ""});
      ids.push_back(int32_t(t.get<int64_t>()));
    }
    send_json(res, {{"content", detokenize(ids)}});
  });
}

}  // namespace pagoda::server
