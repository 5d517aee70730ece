// Tool calls (parsing each format whole and streamed, tools/tool_choice validation, the forced-call
// schema against the grammar engine, tool_calls history through a real template), /tokenize and
// /detokenize, and `echo` on completions, end to end over HTTP where it matters.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "apps/server/request_parse.h"
#include "apps/server/responses.h"
#include "apps/server/server.h"
#include "apps/server/sse.h"
#include "apps/server/tool_calls.h"
#include "backends/cpu/cpu_backend.h"
#include "core/chat/template.h"
#include "core/engine/engine.h"
#include "core/grammar/json_schema.h"
#include "core/grammar/matcher.h"
#include "tests/openai_sdk/tool_model.h"
#include "server_harness.h"
#include "tests/test_models.h"

using namespace pagoda;
using namespace pagoda::server;
using nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

const std::string kTemplates = PAGODA_CHAT_TEMPLATES_DIR;
const std::vector<std::string> kNames = {"get_weather", "get_time"};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------------
// The parser, whole and streamed.

struct ParseCase {
  std::string name, text, content;
  std::vector<ToolCall> calls;
};

const std::vector<ParseCase>& parse_cases() {
  static const std::vector<ParseCase> cases = {
      {"hermes", "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
       "Let me check.\n", {{"get_weather", R"({"city":"Paris"})"}}},
      {"hermes_two_unclosed",
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n"
       "{\"name\": \"get_time\", \"arguments\": {\"zone\": \"CET\"}}",
       "", {{"get_weather", R"({"city":"Paris"})"}, {"get_time", R"({"zone":"CET"})"}}},
      {"hermes_string_arguments", "<tool_call>{\"name\": \"get_time\", \"arguments\": \"{\\\"zone\\\": \\\"UTC\\\"}\"}</tool_call>",
       "", {{"get_time", R"({"zone": "UTC"})"}}},
      {"llama31_bare_json", " {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\", \"days\": [1, 2]}}", "",
       {{"get_weather", R"({"city":"Oslo","days":[1,2]})"}}},
      {"llama31_python_tag", "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}",
       "", {{"get_time", "{}"}, {"get_weather", R"({"city":"Rome"})"}}},
      {"forced_array", R"([{"name": "get_time", "arguments": {"zone": "UTC"}}, {"name": "get_weather", "arguments": {"city": "Lima"}}])",
       "", {{"get_time", R"({"zone":"UTC"})"}, {"get_weather", R"({"city":"Lima"})"}}},
      {"mistral_array", "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]", "",
       {{"get_weather", R"({"city":"Paris"})"}}},
      {"mistral_args_runs", "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}", "",
       {{"get_weather", R"({"city":"Paris"})"}, {"get_time", "{}"}}},
      // Malformed or not a call: everything is content.
      {"plain", "Once upon a time, there was a cat.", "Once upon a time, there was a cat.", {}},
      {"broken_json", "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": }</tool_call>",
       "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": }</tool_call>", {}},
      {"unknown_function", R"({"name": "launch_rockets", "arguments": {}})", R"({"name": "launch_rockets", "arguments": {}})", {}},
      {"name_not_string", R"({"name": 5, "arguments": {}})", R"({"name": 5, "arguments": {}})", {}},
      {"json_then_text", R"({"name": "get_time", "arguments": {}} and more)", R"({"name": "get_time", "arguments": {}} and more)", {}},
      {"mistral_not_json", "[TOOL_CALLS] sorry", "[TOOL_CALLS] sorry", {}},
      {"arguments_not_object", R"(<tool_call>{"name": "get_time", "arguments": [1]}</tool_call>)",
       R"(<tool_call>{"name": "get_time", "arguments": [1]}</tool_call>)", {}},
      {"unclosed_json", "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {", "<|python_tag|>{\"name\": \"get_time\", \"parameters\": {", {}},
      {"almost_marker", "I wrote <tool_cal and [TOOL_CALL and <|python_ta.", "I wrote <tool_cal and [TOOL_CALL and <|python_ta.", {}},
  };
  return cases;
}

void expect_calls(const std::vector<ToolCall>& got, const std::vector<ToolCall>& want, const std::string& name) {
  ASSERT_EQ(got.size(), want.size()) << name;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].name, want[i].name) << name;
    EXPECT_EQ(got[i].arguments, want[i].arguments) << name;
  }
}

TEST(ToolParse, EachFormatAndMalformedOutput) {
  for (const auto& c : parse_cases()) {
    const ToolParse p = parse_tool_calls(c.text, kNames);
    EXPECT_EQ(p.content, c.content) << c.name;
    expect_calls(p.calls, c.calls, c.name);
  }
  // Without declared names any function is taken (a model's own tool), but a name is still needed.
  EXPECT_EQ(parse_tool_calls(R"({"name": "launch_rockets", "arguments": {}})", {}).calls.size(), 1u);
}

// Streaming splits the text anywhere: what it sends plus what finish() returns is the content the
// whole-text parse gives, and no partial marker or call text is ever sent early.
TEST(ToolParse, StreamedMatchesWholeAtEverySplit) {
  std::mt19937 rng(17);
  std::printf("seed 17\n");
  for (const auto& c : parse_cases()) {
    for (int trial = 0; trial < 40; ++trial) {
      ToolCallStream s(kNames);
      std::string sent;
      for (size_t i = 0; i < c.text.size();) {
        const size_t n = trial == 0 ? 1 : 1 + rng() % 7;
        sent += s.push(std::string_view(c.text).substr(i, n));
        i += n;
        if (!c.calls.empty()) {
          EXPECT_EQ(c.content.rfind(sent, 0), 0u) << c.name << ": sent " << sent;
        }
      }
      const ToolParse end = s.finish();
      EXPECT_EQ(sent + end.content, c.content) << c.name << " trial " << trial;
      expect_calls(end.calls, c.calls, c.name);
    }
  }
}

TEST(ToolParse, ResponseShapes) {
  const std::vector<ToolCall> calls = {{"get_weather", R"({"city":"Paris"})"}, {"get_time", "{}"}};
  const json plain = tool_calls_json(calls, {"call_a", "call_b"}, false);
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_EQ(plain[0], json::parse(R"({"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}})"));
  EXPECT_FALSE(plain[0].contains("index"));
  const json delta = tool_calls_json(calls, {"call_a", "call_b"}, true);
  EXPECT_EQ(delta[1]["index"], 1);
  EXPECT_EQ(delta[1]["id"], "call_b");
  const std::string id = new_tool_call_id();
  EXPECT_EQ(id.size(), 29u);
  EXPECT_EQ(id.rfind("call_", 0), 0u);
  EXPECT_NE(id, new_tool_call_id());

  ResponseMeta meta{Endpoint::Chat, "chatcmpl-1", 0, "m"};
  ChoiceResult r;
  r.finish_reason = "tool_calls";
  r.tool_calls = calls;
  const json body = completion_json(meta, {r});
  const json& msg = body["choices"][0]["message"];
  EXPECT_TRUE(msg["content"].is_null());
  EXPECT_EQ(msg["tool_calls"].size(), 2u);
  EXPECT_EQ(msg["tool_calls"][0]["function"]["arguments"], R"({"city":"Paris"})");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "tool_calls");
  const json chunk = tool_calls_chunk_json(meta, 0, calls);
  EXPECT_EQ(chunk["object"], "chat.completion.chunk");
  EXPECT_EQ(chunk["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
}

// ---------------------------------------------------------------------------------------------
// Request fields.

const char* kTools = R"([
  {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]},
                   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
  {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
    "properties": {"zone": {"$ref": "#/$defs/zone"}}, "required": ["zone"], "$defs": {"zone": {"enum": ["UTC", "CET"]}}}}}])";

ojson chat_with(const std::string& extra) {
  return ojson::parse(R"({"messages": [{"role": "user", "content": "Weather?"}], "tools": )" + std::string(kTools) + extra + "}");
}

ParseLimits limits() {
  ParseLimits l;
  l.ctx_len = 512;
  l.vocab = 512;
  return l;
}

TEST(ToolSpecParse, ChoicesAndDefaults) {
  auto none = read_tool_spec(ojson::parse(R"({"messages": []})"));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->choice, ToolChoice::None);
  auto dflt = read_tool_spec(chat_with(""));
  ASSERT_TRUE(dflt.ok()) << dflt.error();
  EXPECT_EQ(dflt->choice, ToolChoice::Auto);
  EXPECT_EQ(dflt->names, kNames);
  EXPECT_TRUE(dflt->parallel);
  EXPECT_EQ(read_tool_spec(chat_with(R"(, "tool_choice": "none")"))->choice, ToolChoice::None);
  EXPECT_EQ(read_tool_spec(chat_with(R"(, "tool_choice": "required")"))->choice, ToolChoice::Required);
  auto named = read_tool_spec(chat_with(R"(, "tool_choice": {"type": "function", "function": {"name": "get_time"}}, "parallel_tool_calls": false)"));
  ASSERT_TRUE(named.ok()) << named.error();
  EXPECT_EQ(named->choice, ToolChoice::Named);
  EXPECT_EQ(named->forced, "get_time");
  EXPECT_FALSE(named->parallel);
  // The same through the whole request parser: tools reach the template as sent.
  auto p = parse_request(chat_with(R"(, "tool_choice": "required")").dump(), Endpoint::Chat, limits());
  ASSERT_TRUE(p.ok()) << p.error();
  EXPECT_EQ(p->tools.choice, ToolChoice::Required);
  EXPECT_EQ(p->chat_tools, ojson::parse(kTools));
}

TEST(ToolSpecParse, BadToolsAndChoicesNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"tools": {}})", "'tools'"},
      {R"({"tools": [{"type": "retrieval"}]})", "'tools'"},
      {R"({"tools": [{"type": "function"}]})", "'function'"},
      {R"({"tools": [{"type": "function", "function": {"name": ""}}]})", "'name'"},
      {R"({"tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]})", "'parameters'"},
      {R"({"tools": [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]})", "twice"},
      {R"({"tool_choice": "required"})", "declares no 'tools'"},
      {R"({"tool_choice": {"type": "function", "function": {"name": "f"}}})", "declares no 'tools'"},
      {R"({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "always"})", "'tool_choice'"},
      {R"({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function"}})", "'tool_choice'"},
      {R"({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}})",
       "not in 'tools'"},
      {R"({"tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": "yes"})", "'parallel_tool_calls'"},
  };
  for (const auto& [body, want] : cases) {
    auto r = read_tool_spec(ojson::parse(body));
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_NE(r.error().find(want), std::string::npos) << body << " -> " << r.error();
  }
  auto r = parse_request(R"({"messages": [{"role": "user", "content": "x"}], "tools": 5})", Endpoint::Chat, limits());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("'tools'"), std::string::npos);
}

// What the grammar engine will accept under the forced-call schema: exactly calls the parser reads.
bool grammar_accepts(const ojson& schema, const std::string& text) {
  auto g = grammar::compile_json_schema(schema);
  EXPECT_TRUE(g.ok()) << (g ? "" : g.error());
  if (!g) return false;
  grammar::GrammarMatcher m(std::make_shared<const grammar::Grammar>(std::move(*g)));
  return m.accept_bytes(text) && m.is_complete();
}

TEST(ToolSchema, ForcedCallsCompileAndParse) {
  auto named = forced_call_schema(*read_tool_spec(chat_with(R"(, "tool_choice": {"type": "function", "function": {"name": "get_time"}})")));
  ASSERT_TRUE(named.ok()) << named.error();
  const std::string time_call = R"({"name": "get_time", "arguments": {"zone": "CET"}})";
  EXPECT_TRUE(grammar_accepts(*named, time_call));
  EXPECT_FALSE(grammar_accepts(*named, R"({"name": "get_weather", "arguments": {"city": "Paris"}})"));
  EXPECT_FALSE(grammar_accepts(*named, R"({"name": "get_time", "arguments": {"zone": "PST"}})"));
  EXPECT_EQ(parse_tool_calls(time_call, kNames).calls.size(), 1u);

  auto required = forced_call_schema(*read_tool_spec(chat_with(R"(, "tool_choice": "required")")));
  ASSERT_TRUE(required.ok()) << required.error();
  const std::string two = R"([{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}, {"name": "get_time", "arguments": {"zone": "UTC"}}])";
  EXPECT_TRUE(grammar_accepts(*required, two));
  EXPECT_FALSE(grammar_accepts(*required, "[]"));
  EXPECT_FALSE(grammar_accepts(*required, "The weather is nice."));
  EXPECT_EQ(parse_tool_calls(two, kNames).calls.size(), 2u);

  auto single = forced_call_schema(*read_tool_spec(chat_with(R"(, "tool_choice": "required", "parallel_tool_calls": false)")));
  ASSERT_TRUE(single.ok());
  EXPECT_TRUE(grammar_accepts(*single, time_call));
  EXPECT_FALSE(grammar_accepts(*single, "[" + time_call + "]"));

  EXPECT_TRUE(forced_call_schema(*read_tool_spec(chat_with("")))->is_null());  // auto: unconstrained
}

// Clients send arguments as JSON text; a template gets the object, so its tojson writes the call
// the way Jinja2 does for the same conversation.
TEST(ToolSpecParse, ToolCallHistoryRendersLikeJinja2) {
  REQUIRE_FILES(kTemplates + "/conversations/tool-call-round-trip.json", kTemplates + "/templates/Qwen-Qwen2.5-7B-Instruct.jinja",
                kTemplates + "/expected/Qwen-Qwen2.5-7B-Instruct/tool-call-round-trip.txt");
  ojson vars = ojson::parse(slurp(kTemplates + "/conversations/tool-call-round-trip.json"));
  ojson req = {{"messages", vars["messages"]}, {"tools", vars["tools"]}};
  for (auto& m : req["messages"])
    if (m.contains("tool_calls"))
      for (auto& c : m["tool_calls"]) c["function"]["arguments"] = c["function"]["arguments"].dump();
  auto p = parse_request(req.dump(), Endpoint::Chat, limits());
  ASSERT_TRUE(p.ok()) << p.error();
  auto t = ChatTemplate::parse(slurp(kTemplates + "/templates/Qwen-Qwen2.5-7B-Instruct.jinja"));
  ASSERT_TRUE(t.ok()) << t.error();
  ojson render_vars = ojson::object();
  render_vars["messages"] = p->chat_messages;
  render_vars["tools"] = p->chat_tools;
  render_vars["add_generation_prompt"] = true;
  render_vars["bos_token"] = vars["bos_token"];
  render_vars["eos_token"] = vars["eos_token"];
  auto out = t->render(render_vars);
  ASSERT_TRUE(out.ok()) << out.error();
  EXPECT_EQ(*out, slurp(kTemplates + "/expected/Qwen-Qwen2.5-7B-Instruct/tool-call-round-trip.txt"));
}

// ---------------------------------------------------------------------------------------------
// End to end: /tokenize, /detokenize, echo, tools with a model that writes stories.

pagoda::testing::StoriesModel& model() { return pagoda::testing::stories_model(); }

// The constructed model that always calls get_weather (tests/openai_sdk/tool_model.h).
struct ToolModel {
  std::unique_ptr<LoadedModel> m;
  std::string path = (std::filesystem::temp_directory_path() / ("pagoda_tool_model_" + std::to_string(::getpid()) + ".gguf")).string();
  ToolModel() {
    auto st = pagoda::testing::write_tool_call_model(path, "");
    EXPECT_TRUE(st.ok()) << (st ? "" : st.error());
    auto r = LoadedModel::load(path, model().be);
    EXPECT_TRUE(r.ok()) << (r ? "" : r.error());
    if (r) m = std::move(*r);
  }
  ~ToolModel() { std::filesystem::remove(path); }
};

LoadedModel& tool_model() {
  static ToolModel t;
  return *t.m;
}

EngineConfig tools_engine() {
  EngineConfig ec;
  ec.num_blocks = 256;
  ec.max_running = 16;
  return ec;
}

struct Harness : pagoda::testing::ServerUnderTest {
  explicit Harness(ServerConfig sc = {}, LoadedModel* served = nullptr)
      : ServerUnderTest(served ? *served : *model().m, model().be, tools_engine(), std::move(sc)) {}
  httplib::Result post(const std::string& path, const std::string& body, const httplib::Headers& h = {}) const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c.Post(path.c_str(), h, body, "application/json");
  }
  // The SSE events of a streamed request, parsed.
  std::vector<json> stream(const std::string& path, const json& body) const {
    auto r = post(path, body.dump());
    std::vector<json> out;
    if (!r || r->status != 200) return out;
    SseParser parser;
    for (const auto& ev : parser.feed(r->body))
      if (ev != "[DONE]") out.push_back(json::parse(ev));
    return out;
  }
};

json body_of(const httplib::Result& r) { return r ? json::parse(r->body, nullptr, false) : json(); }

void expect_400(const httplib::Result& r, const std::string& want) {
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(body_of(r)["error"]["message"].get<std::string>().find(want), std::string::npos) << r->body;
}

TEST(ServerTokenize, TokenizeAndDetokenizeRoundTrip) {
  Harness h;
  const Tokenizer& tok = *model().m->tokenizer;
  const std::string text = "Once upon a time, a cat";
  auto r = h.post("/tokenize", json{{"content", text}}.dump());
  ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
  const auto ids = body_of(r)["tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(ids, tok.encode(text, false));

  auto special = h.post("/tokenize", json{{"content", text}, {"add_special", true}}.dump());
  ASSERT_TRUE(special && special->status == 200);
  const json sj = body_of(special);
  ASSERT_EQ(sj["tokens"].size(), ids.size() + 1);
  EXPECT_EQ(sj["tokens"][0], tok.bos());

  auto pieces = h.post("/tokenize", json{{"content", text}, {"with_pieces", true}}.dump());
  ASSERT_TRUE(pieces && pieces->status == 200);
  std::string joined;
  const json pj = body_of(pieces);
  for (const auto& p : pj["tokens"]) {
    ASSERT_TRUE(p["id"].is_number_integer() && p["piece"].is_string()) << p;
    joined += p["piece"].get<std::string>();
  }
  EXPECT_EQ(joined, text);

  auto d = h.post("/detokenize", json{{"tokens", ids}}.dump());
  ASSERT_TRUE(d && d->status == 200);
  EXPECT_EQ(body_of(d)["content"], text);
  // Control tokens (BOS) add no text, as in completions.
  auto db = h.post("/detokenize", json{{"tokens", sj["tokens"]}}.dump());
  EXPECT_EQ(body_of(db)["content"], text);
  auto empty = h.post("/detokenize", R"({"tokens": []})");
  EXPECT_EQ(body_of(empty)["content"], "");
}

TEST(ServerTokenize, BadInputIs400AndKeysAreChecked) {
  Harness h;
  expect_400(h.post("/tokenize", "{"), "malformed JSON");
  expect_400(h.post("/tokenize", "[1]"), "JSON object");
  expect_400(h.post("/tokenize", "{}"), "'content'");
  expect_400(h.post("/tokenize", R"({"content": 5})"), "'content'");
  expect_400(h.post("/tokenize", R"({"content": "x", "with_pieces": "yes"})"), "'with_pieces'");
  expect_400(h.post("/detokenize", R"({"tokens": "abc"})"), "'tokens'");
  expect_400(h.post("/detokenize", R"({"tokens": [1, -1]})"), "0..511");
  expect_400(h.post("/detokenize", R"({"tokens": [512]})"), "0..511");
  expect_400(h.post("/detokenize", R"({"tokens": [1.5]})"), "'tokens'");
  expect_400(h.post("/detokenize", R"({"tokens": [18446744073709551615]})"), "'tokens'");

  ServerConfig sc;
  auto keys = ApiKeys::parse("sk-a alice\n");
  ASSERT_TRUE(keys.ok()) << keys.error();
  sc.api_keys = std::move(*keys);
  Harness locked(sc);
  auto no_key = locked.post("/tokenize", R"({"content": "hi"})");
  ASSERT_TRUE(no_key);
  EXPECT_EQ(no_key->status, 401);
  auto ok = locked.post("/detokenize", R"({"tokens": [1]})", {{"Authorization", "Bearer sk-a"}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST(ServerEcho, PromptComesBackBeforeTheCompletion) {
  Harness h;
  const json base = {{"prompt", "Once upon a time"}, {"max_tokens", 12}, {"temperature", 0}};
  const json plain = body_of(h.post("/v1/completions", base.dump()));
  const std::string completion = plain["choices"][0]["text"];
  json echo = base;
  echo["echo"] = true;
  echo["n"] = 2;
  echo["seed"] = 3;
  const json e = body_of(h.post("/v1/completions", echo.dump()));
  ASSERT_EQ(e["choices"].size(), 2u) << e;
  for (const auto& c : e["choices"]) EXPECT_EQ(c["text"], "Once upon a time" + completion);
  EXPECT_EQ(e["usage"]["completion_tokens"], 24);

  echo["stream"] = true;
  std::map<int, std::string> streamed;
  for (const auto& ev : h.stream("/v1/completions", echo)) streamed[ev["choices"][0]["index"].get<int>()] += ev["choices"][0]["text"];
  EXPECT_EQ(streamed[0], "Once upon a time" + completion);
  EXPECT_EQ(streamed[1], "Once upon a time" + completion);

  // Token-id prompts echo as text.
  const auto ids = model().m->tokenizer->encode("Once upon a time", true);
  const json te = body_of(h.post("/v1/completions", json{{"prompt", ids}, {"max_tokens", 12}, {"temperature", 0}, {"echo", true}}.dump()));
  EXPECT_EQ(te["choices"][0]["text"], "Once upon a time" + completion);

  expect_400(h.post("/v1/completions", R"({"prompt": "x", "echo": "yes"})"), "'echo'");
  expect_400(h.post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}], "echo": true})"), "'echo'");
}

// A story model never calls a tool: its text comes back as content, streamed the same, and
// tool_choice errors are 400s that name the problem.
TEST(ServerTools, AutoWithoutCallsIsContentAndErrorsAre400) {
  Harness h;
  json body = {{"messages", {{{"role", "user"}, {"content", "Tell me a story."}}}}, {"tools", json::parse(kTools)},
               {"max_tokens", 16}, {"temperature", 0}};
  const json r = body_of(h.post("/v1/chat/completions", body.dump()));
  ASSERT_TRUE(r.contains("choices")) << r;
  const json& msg = r["choices"][0]["message"];
  EXPECT_FALSE(msg.contains("tool_calls"));
  ASSERT_TRUE(msg["content"].is_string());
  EXPECT_FALSE(msg["content"].get<std::string>().empty());
  EXPECT_NE(r["choices"][0]["finish_reason"], "tool_calls");
  body["stream"] = true;
  std::string text;
  for (const auto& ev : h.stream("/v1/chat/completions", body)) {
    EXPECT_FALSE(ev["choices"][0]["delta"].contains("tool_calls"));
    if (ev["choices"][0]["delta"].contains("content")) text += ev["choices"][0]["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(text, msg["content"]);

  json unsupported = body;
  unsupported["stream"] = false;
  unsupported["tools"][0]["function"]["parameters"]["properties"]["days"] = {{"type", "integer"}, {"minimum", 1}};
  unsupported["tool_choice"] = "required";
  expect_400(h.post("/v1/chat/completions", unsupported.dump()), "minimum");
  unsupported["tool_choice"] = "auto";  // unconstrained: the schema is only shown to the model
  auto fine = h.post("/v1/chat/completions", unsupported.dump());
  ASSERT_TRUE(fine);
  EXPECT_EQ(fine->status, 200) << fine->body;
  json unknown = body;
  unknown["stream"] = false;
  unknown["tool_choice"] = {{"type", "function"}, {"function", {{"name", "nope"}}}};
  expect_400(h.post("/v1/chat/completions", unknown.dump()), "not in 'tools'");
}

// A model that does call a tool, through Qwen 2.5's template: calls come back in OpenAI's shapes,
// plain and streamed, for auto / named / required; `none` leaves the text alone; n = 2 gives each
// choice its own call ids; the call sent back as history renders and runs.
TEST(ServerTools, CallsFromAModelComeBackPlainAndStreamed) {
  REQUIRE_FILES(kTemplates + "/templates/Qwen-Qwen2.5-7B-Instruct.jinja");
  ServerConfig sc;
  sc.chat_template = slurp(kTemplates + "/templates/Qwen-Qwen2.5-7B-Instruct.jinja");
  Harness h(sc, &tool_model());
  const json ask = {{"messages", {{{"role", "user"}, {"content", "Weather in Paris?"}}}}, {"tools", json::parse(kTools)},
                    {"max_tokens", 32}, {"temperature", 0.7}};
  const std::string args = R"({"city":"Paris","unit":"celsius"})";
  for (const json& choice : {json(nullptr), json("auto"), json("required"),
                             json{{"type", "function"}, {"function", {{"name", "get_weather"}}}}}) {
    json body = ask;
    if (!choice.is_null()) body["tool_choice"] = choice;
    // `required` with parallel calls allowed samples an array of calls under the grammar (checked
    // below); one call makes it the same single-object document as a named choice.
    if (choice == "required") body["parallel_tool_calls"] = false;
    const json r = body_of(h.post("/v1/chat/completions", body.dump()));
    ASSERT_TRUE(r.contains("choices")) << r;
    const json& msg = r["choices"][0]["message"];
    EXPECT_EQ(r["choices"][0]["finish_reason"], "tool_calls") << choice;
    EXPECT_TRUE(msg["content"].is_null()) << msg;
    ASSERT_EQ(msg["tool_calls"].size(), 1u) << msg;
    EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "get_weather");
    EXPECT_EQ(msg["tool_calls"][0]["function"]["arguments"], args);
    EXPECT_EQ(msg["tool_calls"][0]["type"], "function");
  }

  // `required`, parallel calls allowed: one or more calls, each a declared function whose arguments
  // validate (their number and values are the sampler's, not the model's own <tool_call> text).
  json many = ask;
  many["tool_choice"] = "required";
  // Seeded, with room for several calls: each further call is the sampler's choice at temperature
  // 0.7, so an unseeded array outgrew 32 tokens now and then (finish_reason "length", one CI run).
  many["seed"] = 11;
  many["max_tokens"] = 160;
  const json rm = body_of(h.post("/v1/chat/completions", many.dump()));
  ASSERT_TRUE(rm.contains("choices")) << rm;
  EXPECT_EQ(rm["choices"][0]["finish_reason"], "tool_calls") << rm;
  ASSERT_GE(rm["choices"][0]["message"]["tool_calls"].size(), 1u) << rm;
  for (const json& call : rm["choices"][0]["message"]["tool_calls"]) {
    const json a = json::parse(call["function"]["arguments"].get<std::string>());
    if (call["function"]["name"] == "get_weather") EXPECT_TRUE(a.contains("city") && a["city"].is_string()) << a;
    else if (call["function"]["name"] == "get_time") EXPECT_TRUE(a.contains("zone") && a["zone"].is_string()) << a;
    else ADD_FAILURE() << "undeclared function in " << call;
  }

  json none = ask;
  none["tool_choice"] = "none";
  const json rn = body_of(h.post("/v1/chat/completions", none.dump()));
  EXPECT_FALSE(rn["choices"][0]["message"].contains("tool_calls"));
  EXPECT_EQ(rn["choices"][0]["message"]["content"],
            R"(<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}</tool_call>)");
  EXPECT_EQ(rn["choices"][0]["finish_reason"], "stop");

  json two = ask;
  two["n"] = 2;
  const json r2 = body_of(h.post("/v1/chat/completions", two.dump()));
  ASSERT_EQ(r2["choices"].size(), 2u);
  EXPECT_NE(r2["choices"][0]["message"]["tool_calls"][0]["id"], r2["choices"][1]["message"]["tool_calls"][0]["id"]);

  json streamed = ask;
  streamed["stream"] = true;
  std::vector<json> calls;
  std::string finish, content;
  for (const auto& ev : h.stream("/v1/chat/completions", streamed)) {
    const json& c = ev["choices"][0];
    if (c["delta"].contains("role")) EXPECT_TRUE(c["delta"]["content"].is_null()) << ev;  // only calls: content null
    else if (c["delta"].contains("content")) content += c["delta"]["content"].get<std::string>();
    if (c["delta"].contains("tool_calls"))
      for (const auto& t : c["delta"]["tool_calls"]) calls.push_back(t);
    if (!c["finish_reason"].is_null()) finish = c["finish_reason"];
  }
  EXPECT_EQ(content, "");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0]["index"], 0);
  EXPECT_EQ(calls[0]["function"]["arguments"], args);
  EXPECT_EQ(calls[0]["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_EQ(finish, "tool_calls");

  // The reply goes back as history (arguments as JSON text) with the tool's result.
  const json first = body_of(h.post("/v1/chat/completions", ask.dump()));
  json next = ask;
  next["messages"].push_back(first["choices"][0]["message"]);
  next["messages"].push_back({{"role", "tool"}, {"tool_call_id", first["choices"][0]["message"]["tool_calls"][0]["id"]},
                              {"content", R"({"temp_c": 21})"}});
  const json rr = body_of(h.post("/v1/chat/completions", next.dump()));
  ASSERT_TRUE(rr.contains("usage")) << rr;
  EXPECT_GT(rr["usage"]["prompt_tokens"].get<int>(), first["usage"]["prompt_tokens"].get<int>());
}

}  // namespace
