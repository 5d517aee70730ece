#include "apps/server/request_parse.h"

#include <climits>
#include <algorithm>
#include <charconv>
#include <fmt/core.h>

#include <cmath>
#include <limits>
#include <set>
#include <nlohmann/json.hpp>

#include "core/grammar/json_schema.h"

namespace pagoda::server {
namespace {

using nlohmann::json;

// Optional fields may be absent or null: OpenAI clients send explicit nulls for "not set".
const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Error bad(const char* key, const std::string& what) { return make_error(fmt::format("'{}' {}", key, what)); }

// Integral JSON numbers only: 16 and 16.0 count; 16.5, "16" and true do not. Range-checked as a
// double first so huge values (1e300, 2^64-1) are an out-of-range error rather than overflow.
Status read_int(const json& obj, const char* key, int64_t lo, int64_t hi, int64_t& out, bool* set = nullptr) {
  const json* v = field(obj, key);
  if (!v) return {};
  const std::string want = fmt::format("must be an integer in {}..{}", lo, hi);
  if (!v->is_number()) return bad(key, want + ", got " + std::string(v->type_name()));
  const double d = v->get<double>();
  if (!std::isfinite(d) || d != std::floor(d)) return bad(key, want);
  if (d < double(lo) || d > double(hi)) return bad(key, want);
  out = v->is_number_integer() ? v->get<int64_t>() : int64_t(d);
  if (out < lo || out > hi) return bad(key, want);  // rounding at the edges of the double range
  if (set) *set = true;
  return {};
}

Status read_number(const json& obj, const char* key, double lo, double hi, bool lo_open, double& out) {
  const json* v = field(obj, key);
  if (!v) return {};
  const std::string want = fmt::format("must be a number in {}{}, {}]", lo_open ? "(" : "[", lo, hi);
  if (!v->is_number()) return bad(key, want + ", got " + std::string(v->type_name()));
  const double d = v->get<double>();
  if (!std::isfinite(d) || d > hi || d < lo || (lo_open && d == lo)) return bad(key, want);
  out = d;
  return {};
}

Status read_bool(const json& obj, const char* key, bool& out) {
  const json* v = field(obj, key);
  if (!v) return {};
  if (!v->is_boolean()) return bad(key, "must be a boolean, got " + std::string(v->type_name()));
  out = v->get<bool>();
  return {};
}

// Any integer is a valid seed; negative ones wrap, as they would in C.
Status read_seed(const json& obj, ParsedRequest& r) {
  const json* v = field(obj, "seed");
  if (!v) return {};
  if (v->is_number_unsigned()) {
    r.sampling.seed = v->get<uint64_t>();
  } else if (v->is_number_integer()) {
    r.sampling.seed = uint64_t(v->get<int64_t>());
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) && v->get<double>() == std::floor(v->get<double>()) &&
             std::fabs(v->get<double>()) < 9.2e18) {
    r.sampling.seed = uint64_t(int64_t(v->get<double>()));
  } else {
    return bad("seed", "must be an integer");
  }
  r.seed_set = true;
  return {};
}

// logit_bias: {"token id": bias in [-100, 100]} as OpenAI defines it; ids checked against the vocabulary.
Status read_logit_bias(const json& obj, const ParseLimits& lim, ParsedRequest& r) {
  const auto it = obj.find("logit_bias");
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_object()) return bad("logit_bias", "must be an object mapping token ids to biases");
  if (it->size() > 1024) return bad("logit_bias", "has more than 1024 entries");
  for (const auto& [key, value] : it->items()) {
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size() || key.empty() || id < 0 || id > INT32_MAX)
      return bad("logit_bias", "key '" + key + "' is not a token id");
    if (lim.vocab > 0 && id >= lim.vocab)
      return bad("logit_bias", "token id " + key + " is outside the vocabulary of " + std::to_string(lim.vocab));
    if (!value.is_number() || !(value.get<double>() >= -100.0 && value.get<double>() <= 100.0))
      return bad("logit_bias", "bias for token " + key + " must be a number in [-100, 100]");
    r.sampling.logit_bias.emplace_back(int32_t(id), value.get<float>());
  }
  std::sort(r.sampling.logit_bias.begin(), r.sampling.logit_bias.end());
  return {};
}

Status read_sampling(const json& obj, const ParseLimits& lim, ParsedRequest& r) {
  double temp = 1.0, top_p = 1.0, min_p = 0.0, rep = 1.0, presence = 0, frequency = 0;
  int64_t top_k = 0, rep_n = 64;
  PAGODA_TRY(read_number(obj, "temperature", 0.0, 100.0, false, temp));
  PAGODA_TRY(read_number(obj, "top_p", 0.0, 1.0, true, top_p));
  PAGODA_TRY(read_int(obj, "top_k", 0, 1 << 24, top_k));
  PAGODA_TRY(read_number(obj, "min_p", 0.0, 1.0, false, min_p));
  PAGODA_TRY(read_number(obj, "repeat_penalty", 0.0, 10.0, true, rep));
  PAGODA_TRY(read_int(obj, "repeat_last_n", 0, 1 << 20, rep_n));
  // OpenAI's additive penalties, over the generated tokens (see core/sample/sampler.h).
  PAGODA_TRY(read_number(obj, "presence_penalty", -2.0, 2.0, false, presence));
  PAGODA_TRY(read_number(obj, "frequency_penalty", -2.0, 2.0, false, frequency));
  PAGODA_TRY(read_logit_bias(obj, lim, r));
  r.sampling.presence_penalty = float(presence);
  r.sampling.frequency_penalty = float(frequency);
  r.sampling.temperature = float(temp);
  r.sampling.top_p = float(top_p);
  r.sampling.top_k = int32_t(top_k);
  r.sampling.min_p = float(min_p);
  r.sampling.repeat_penalty = float(rep);
  r.sampling.repeat_last_n = int32_t(rep_n);
  return read_seed(obj, r);
}

// n choices; best_of (server-side ranking by log-probability) only where it asks for no ranking.
Status read_choices(const json& obj, const ParseLimits& lim, ParsedRequest& r) {
  int64_t n = 1, best_of = 0;
  bool best_of_set = false;
  PAGODA_TRY(read_int(obj, "n", 1, lim.max_n, n));
  PAGODA_TRY(read_int(obj, "best_of", 1, 1 << 20, best_of, &best_of_set));
  if (best_of_set && best_of != n) return bad("best_of", "other than n is not supported (choices are not ranked)");
  r.n = int32_t(n);
  return {};
}

// Features whose only supported value is the default: accept the default, refuse anything else.
Status read_unsupported(const json& obj, ParsedRequest& r) {
  PAGODA_TRY(read_bool(obj, "echo", r.echo));
  if (r.echo && r.endpoint == Endpoint::Chat) return bad("echo", "is a completions field (chat has no prompt text to echo)");
  if (const json* v = field(obj, "suffix"); v && !(v->is_string() && v->get_ref<const std::string&>().empty()))
    return bad("suffix", "is not supported");
  return {};
}

// Chat: `logprobs` (boolean) and `top_logprobs` (0..20, only with logprobs). Completions: the
// legacy `logprobs` (an integer 0..20: the sampled token's log-probability plus that many top ones).
Status read_logprobs(const json& obj, ParsedRequest& r) {
  const json* v = field(obj, "logprobs");
  if (r.endpoint == Endpoint::Completions) {
    if (field(obj, "top_logprobs")) return bad("top_logprobs", "is a chat parameter; completions take 'logprobs': N");
    if (v && v->is_boolean()) return bad("logprobs", "must be an integer in 0..20 on completions");
    int64_t n = -1;
    PAGODA_TRY(read_int(obj, "logprobs", 0, 20, n));
    r.logprobs = int32_t(n);
    return {};
  }
  bool on = false;
  PAGODA_TRY(read_bool(obj, "logprobs", on));
  int64_t top = 0;
  bool top_set = false;
  PAGODA_TRY(read_int(obj, "top_logprobs", 0, 20, top, &top_set));
  if (top_set && !on) return bad("top_logprobs", "requires 'logprobs': true");
  r.logprobs = on ? int32_t(top) : -1;
  return {};
}

// Structured output. `response_format` as OpenAI defines it ({"type": "text" | "json_object" |
// "json_schema", "json_schema": {"name", "schema", "strict"}}) or `grammar` (the text form of
// docs/structured_output.md), not both. Schemas are read from an order-keeping parse of the body,
// since properties are generated in the order the schema lists them.
Status read_structured(const json& obj, std::string_view body, ParsedRequest& r) {
  const json* rf = field(obj, "response_format");
  const json* gr = field(obj, "grammar");
  if (rf && gr) return bad("grammar", "cannot be combined with 'response_format'");
  if (gr) {
    if (!gr->is_string()) return bad("grammar", "must be a string in the grammar text form");
    auto g = grammar::Grammar::parse(gr->get_ref<const std::string&>());
    if (!g) return bad("grammar", g.error());
    r.grammar_text = gr->get<std::string>();
    r.grammar = std::make_shared<const grammar::Grammar>(std::move(*g));
    return {};
  }
  if (!rf) return {};
  if (!rf->is_object()) return bad("response_format", "must be an object with a 'type'");
  const json* type = field(*rf, "type");
  if (!type || !type->is_string()) return bad("response_format", "needs a 'type' string (text, json_object or json_schema)");
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "text") return {};
  std::string text;
  if (t == "json_object") {
    text = grammar::json_object_grammar();
  } else if (t == "json_schema") {
    const json* js = field(*rf, "json_schema");
    if (!js || !js->is_object()) return bad("response_format", "of type json_schema needs a 'json_schema' object");
    const json* schema = field(*js, "schema");
    if (!schema || !schema->is_object()) return bad("response_format", "json_schema needs a 'schema' object");
    const auto ordered = nlohmann::ordered_json::parse(body.begin(), body.end(), nullptr, false);
    if (ordered.is_discarded()) return make_error("malformed JSON");
    auto g = grammar::json_schema_grammar(ordered.at("response_format").at("json_schema").at("schema"));
    if (!g) return bad("response_format", g.error());
    text = std::move(*g);
  } else {
    return bad("response_format", "type must be text, json_object or json_schema, got '" + t + "'");
  }
  auto g = grammar::Grammar::parse(text);
  if (!g) return bad("response_format", g.error());
  r.grammar_text = std::move(text);
  r.grammar = std::make_shared<const grammar::Grammar>(std::move(*g));
  return {};
}

Status read_stop(const json& obj, const ParseLimits& lim, ParsedRequest& r) {
  const json* v = field(obj, "stop");
  if (!v) return {};
  auto add = [&](const json& s) -> Status {
    if (!s.is_string()) return bad("stop", "must be a string or an array of strings");
    const auto& str = s.get_ref<const std::string&>();
    if (str.size() > lim.max_stop_bytes) return bad("stop", fmt::format("entries must be at most {} bytes", lim.max_stop_bytes));
    if (!str.empty()) r.stop.push_back(str);
    return {};
  };
  if (v->is_string()) return add(*v);
  if (!v->is_array()) return bad("stop", "must be a string or an array of strings");
  if (v->size() > lim.max_stop) return bad("stop", fmt::format("may hold at most {} sequences", lim.max_stop));
  for (const auto& s : *v) PAGODA_TRY(add(s));
  return {};
}

Status read_stream(const json& obj, ParsedRequest& r) {
  PAGODA_TRY(read_bool(obj, "stream", r.stream));
  PAGODA_TRY(read_bool(obj, "ignore_eos", r.ignore_eos));
  const json* so = field(obj, "stream_options");
  if (!so) return {};
  if (!so->is_object()) return bad("stream_options", "must be an object");
  return read_bool(*so, "include_usage", r.include_usage);
}

Status read_token_ids(const json& arr, const ParseLimits& lim, std::vector<int32_t>& out) {
  if (arr.empty()) return bad("prompt", "must not be an empty token array");
  if (arr.size() > size_t(lim.ctx_len)) return bad("prompt", fmt::format("has more tokens than the context ({})", lim.ctx_len));
  const int64_t hi = lim.vocab > 0 ? int64_t(lim.vocab) - 1 : int64_t(std::numeric_limits<int32_t>::max());
  for (const auto& t : arr) {
    if (!t.is_number_integer()) return bad("prompt", "token arrays must hold integers only");
    const int64_t id = t.is_number_unsigned() && t.get<uint64_t>() > uint64_t(hi) ? hi + 1 : t.get<int64_t>();
    if (id < 0 || id > hi) return bad("prompt", fmt::format("token ids must be in 0..{}", hi));
    out.push_back(int32_t(id));
  }
  return {};
}

// A prompt is a string, a token-id array, or a one-element array of either (OpenAI batches are
// arrays of prompts; this server takes one prompt per request).
Status read_prompt(const json& obj, const ParseLimits& lim, ParsedRequest& r) {
  const json* v = field(obj, "prompt");
  if (!v) return bad("prompt", "is required");
  if (v->is_string()) {
    r.prompt = v->get<std::string>();
    return {};
  }
  if (!v->is_array()) return bad("prompt", "must be a string or an array of token ids, got " + std::string(v->type_name()));
  if (v->size() == 1 && ((*v)[0].is_string() || (*v)[0].is_array())) {
    if ((*v)[0].is_string()) {
      r.prompt = (*v)[0].get<std::string>();
      return {};
    }
    return read_token_ids((*v)[0], lim, r.prompt_tokens);
  }
  if (!v->empty() && ((*v)[0].is_string() || (*v)[0].is_array())) return bad("prompt", "must hold one prompt (batches are not supported)");
  return read_token_ids(*v, lim, r.prompt_tokens);
}

// Content is a string, or an array of {"type":"text","text":...} parts joined together.
Status read_content(const json& m, const std::string& role, std::string& out) {
  const json* c = field(m, "content");
  if (!c) {
    if (role == "assistant") return {};  // an assistant turn that only called tools has no content
    return bad("messages", "entries need a 'content' string");
  }
  if (c->is_string()) {
    out = c->get<std::string>();
    return {};
  }
  if (!c->is_array()) return bad("messages", "content must be a string or an array of text parts");
  for (const auto& part : *c) {
    if (!part.is_object()) return bad("messages", "content parts must be objects");
    const json* type = field(part, "type");
    const json* text = field(part, "text");
    if (!type || !type->is_string() || type->get_ref<const std::string&>() != "text")
      return bad("messages", "only content parts of type 'text' are supported");
    if (!text || !text->is_string()) return bad("messages", "text parts need a 'text' string");
    out += text->get_ref<const std::string&>();
  }
  return {};
}

Status read_messages(const json& obj, const ParseLimits& lim, ParsedRequest& r) {
  const json* v = field(obj, "messages");
  if (!v) return bad("messages", "is required");
  if (!v->is_array()) return bad("messages", "must be an array, got " + std::string(v->type_name()));
  if (v->empty()) return bad("messages", "must not be empty");
  if (v->size() > lim.max_messages) return bad("messages", fmt::format("may hold at most {} entries", lim.max_messages));
  for (const auto& m : *v) {
    if (!m.is_object()) return bad("messages", "entries must be objects");
    const json* role = field(m, "role");
    if (!role || !role->is_string()) return bad("messages", "entries need a 'role' string");
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";  // OpenAI's newer name for the system turn
    if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool")
      return bad("messages", "role must be system, developer, user, assistant or tool, got '" + rs + "'");
    ChatMessage cm{rs, {}};
    PAGODA_TRY(read_content(m, rs, cm.content));
    r.messages.push_back(std::move(cm));
  }
  return {};
}

// The chat template sees the request's own JSON (in its key order, which tojson output keeps),
// normalized the way the typed messages are.
Status read_template_vars(std::string_view body, ParsedRequest& r) {
  const auto j = nlohmann::ordered_json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("malformed JSON");
  r.chat_messages = j.at("messages");
  for (size_t i = 0; i < r.chat_messages.size() && i < r.messages.size(); ++i) {
    r.chat_messages[i]["role"] = r.messages[i].role;
    if (r.chat_messages[i].contains("content") && r.chat_messages[i]["content"].is_array())
      r.chat_messages[i]["content"] = r.messages[i].content;
  }
  // Clients send a call's arguments as JSON text; templates expect the object (`| tojson` of a
  // string would quote it twice).
  for (auto& m : r.chat_messages) {
    if (!m.is_object() || !m.contains("tool_calls") || !m["tool_calls"].is_array()) continue;
    for (auto& call : m["tool_calls"]) {
      if (!call.is_object() || !call.contains("function") || !call["function"].is_object()) continue;
      auto& fn = call["function"];
      if (!fn.contains("arguments") || !fn["arguments"].is_string()) continue;
      auto args = nlohmann::ordered_json::parse(fn["arguments"].get<std::string>(), nullptr, false);
      if (!args.is_discarded()) fn["arguments"] = std::move(args);
    }
  }
  auto spec = read_tool_spec(j);
  if (!spec) return spec.take_error();
  r.tools = std::move(*spec);
  r.chat_tools = r.tools.tools;
  return {};
}

Status read_limits(const json& obj, const ParseLimits& lim, ParsedRequest& r) {
  int64_t max_tokens = lim.default_max_tokens;
  PAGODA_TRY(read_int(obj, "max_tokens", 1, lim.ctx_len, max_tokens, &r.max_tokens_set));
  // The newer chat name for the same limit; it wins when both are sent.
  PAGODA_TRY(read_int(obj, "max_completion_tokens", 1, lim.ctx_len, max_tokens, &r.max_tokens_set));
  r.max_tokens = int32_t(max_tokens);
  int64_t prio = 0;
  PAGODA_TRY(read_int(obj, "priority", -1000000, 1000000, prio));
  r.priority = int32_t(prio);
  return read_number(obj, "timeout", 0.0, 86400.0, false, r.timeout_s);
}

Result<nlohmann::json> parse_json_object(std::string_view body, const ParseLimits& lim) {
  if (body.empty()) return make_error("request body is empty; expected a JSON object");
  if (json_nesting_depth(body) > lim.max_depth)
    return make_error(fmt::format("request body nests deeper than {} levels", lim.max_depth));
  auto parsed = parse_json_strict(body);
  if (!parsed) return make_error("malformed JSON: " + parsed.error());
  json j = std::move(*parsed);
  if (!j.is_object()) return make_error(std::string("request body must be a JSON object, got ") + j.type_name());
  return j;
}

}  // namespace

Result<nlohmann::json> parse_json_strict(std::string_view text) {
  // Which member names each open object has used so far. JSON parsers disagree on duplicates
  // (first wins, last wins, error), so a body that means one thing here and another to a proxy
  // or a log reader in front of us is refused instead.
  std::vector<std::set<std::string>> open;
  std::string duplicate;
  const json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) open.emplace_back();
    else if (ev == json::parse_event_t::object_end && !open.empty()) open.pop_back();
    else if (ev == json::parse_event_t::key && !open.empty() && !open.back().insert(parsed.get<std::string>()).second &&
             duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  try {
    json j = json::parse(text.begin(), text.end(), cb);
    if (!duplicate.empty()) return make_error(fmt::format("duplicate member \"{}\" in a JSON object", duplicate));
    return j;
  } catch (const json::exception& e) {
    return make_error(e.what());
  }
}

int json_nesting_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if ((c == ']' || c == '}') && depth > 0) --depth;
  }
  return deepest;
}

Result<ParsedRequest> parse_request(std::string_view body, Endpoint endpoint, const ParseLimits& lim) {
  auto obj = parse_json_object(body, lim);
  if (!obj) return obj.take_error();
  const json& j = *obj;
  ParsedRequest r;
  r.endpoint = endpoint;
  if (const json* m = field(j, "model")) {
    if (!m->is_string()) return bad("model", "must be a string");
    r.model = m->get<std::string>();
  }
  PAGODA_TRY(endpoint == Endpoint::Chat ? read_messages(j, lim, r) : read_prompt(j, lim, r));
  if (endpoint == Endpoint::Chat) PAGODA_TRY(read_template_vars(body, r));
  PAGODA_TRY(read_limits(j, lim, r));
  PAGODA_TRY(read_sampling(j, lim, r));
  PAGODA_TRY(read_stream(j, r));
  PAGODA_TRY(read_stop(j, lim, r));
  PAGODA_TRY(read_unsupported(j, r));
  PAGODA_TRY(read_logprobs(j, r));
  PAGODA_TRY(read_structured(j, body, r));
  PAGODA_TRY(read_choices(j, lim, r));
  // "tenant" (and "user") in the body are deliberately never read: the cache scope comes only
  // from the authenticated API key, so a caller cannot name another tenant's scope.
  if (auto st = r.sampling.validate(); !st) return st.take_error();
  return r;
}

Result<double> parse_timeout_header(std::string_view value) {
  const std::string s(value);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v <= 0 || v > 86400)
    return make_error("X-Request-Timeout must be a number of seconds in (0, 86400]");
  return v;
}

}  // namespace pagoda::server
