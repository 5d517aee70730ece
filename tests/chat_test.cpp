// Chat templates where users meet them: `pagoda template`, the server rendering chat requests
// through a model's template, and generation stopping at the file's end-of-turn tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/server/chat_template.h"
#include "apps/server/server.h"
#include "backends/cpu/cpu_backend.h"
#include "core/engine/engine.h"
#include "core/gguf/gguf_writer.h"
#include "core/model/loaded_model.h"
#include "shell.h"

#ifndef PAGODA_CHAT_TEMPLATES_DIR
#define PAGODA_CHAT_TEMPLATES_DIR "../shared/chat-templates"
#endif

namespace pagoda {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ojson = nlohmann::ordered_json;

const std::string kStories = std::string(PAGODA_STORIES_GGUF);
const std::string kTemplates = PAGODA_CHAT_TEMPLATES_DIR;
const std::string kBin = std::string(PAGODA_BINARY_DIR) + "/pagoda";
constexpr int32_t kImStart = 500;  // stories260K ids the variant file respells as chat markers
constexpr int32_t kImEnd = 501;

const char* kChatML =
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string tmp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("pagoda_chat_" + std::to_string(::getpid()) + "_" + name)).string();
}

std::string write_tmp(const std::string& name, const std::string& text) {
  const std::string p = tmp_path(name);
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

// stories260K with a chat template, two ids respelled as <|im_start|>/<|im_end|> control tokens,
// and optionally an EOT id: the shape of a chat model's file, small enough for a test.
std::string write_chat_variant(const std::string& name, const std::string& tmpl, int32_t eot_id = -1) {
  auto f = GgufFile::open(kStories);
  EXPECT_TRUE(f.ok());
  GgufWriter w;
  for (const auto& [k, v] : (*f)->metadata()) w.set_value(k, v);
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (const auto& t : (*f)->find("tokenizer.ggml.tokens")->as_array()->items) tokens.push_back(*t.as_string());
  for (const auto& t : (*f)->find("tokenizer.ggml.token_type")->as_array()->items) types.push_back(int32_t(*t.as_int()));
  tokens[kImStart] = "<|im_start|>";
  tokens[kImEnd] = "<|im_end|>";
  types[kImStart] = types[kImEnd] = 3;  // control
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  if (!tmpl.empty()) w.set_string("tokenizer.chat_template", tmpl);
  if (eot_id >= 0) w.set_u32("tokenizer.ggml.eot_token_id", uint32_t(eot_id));
  for (const auto& t : (*f)->tensors()) {
    const uint8_t* d = (*f)->tensor_data(t);
    w.add_tensor(t.name, t.type, t.dims, std::vector<uint8_t>(d, d + t.n_bytes));
  }
  const std::string path = tmp_path(name);
  EXPECT_TRUE(w.write(path).ok());
  return path;
}

#define REQUIRE_FIXTURES()                                                              \
  if (!fs::exists(kStories) || !fs::exists(kTemplates + "/templates"))                 \
  GTEST_SKIP() << "needs " << kStories << " and " << kTemplates

testing::ShellResult sh(const std::string& args, bool merge_stderr = false) {
  return testing::run_shell(kBin + " " + args, merge_stderr);
}

TEST(TemplateCli, PrintsExactlyWhatJinja2Renders) {
  REQUIRE_FIXTURES();
  for (const auto& [t, c] : {std::pair{"meta-llama-Llama-3.1-8B-Instruct", "tools-offered"},
                             std::pair{"Qwen-Qwen2.5-7B-Instruct", "tool-call-round-trip"},
                             std::pair{"google-gemma-2-2b-it", "unicode"}}) {
    const auto r = sh("template --template " + kTemplates + "/templates/" + t + ".jinja --vars " + kTemplates +
                      "/conversations/" + c + ".json");
    EXPECT_EQ(r.code, 0) << t;
    EXPECT_EQ(r.out, slurp(kTemplates + "/expected/" + t + "/" + c + ".txt")) << t << " / " << c;
  }
}

TEST(TemplateCli, MessagesFormUsesTheModelsTemplateAndVocab) {
  REQUIRE_FIXTURES();
  const std::string model = write_chat_variant("cli.gguf", kChatML);
  const std::string msgs = write_tmp("msgs.json", R"([{"role": "user", "content": "Hi"}])");
  const auto r = sh("template -m " + model + " --messages " + msgs);
  EXPECT_EQ(r.code, 0) << r.out;
  auto f = GgufFile::open(model);
  ASSERT_TRUE(f.ok());
  auto tok = Tokenizer::from_gguf(**f);
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ(r.out, (*tok)->piece((*tok)->bos()) + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // Variables that name bos_token win over the vocabulary's.
  const std::string vars = write_tmp("vars.json", R"({"messages": [], "bos_token": "[B]"})");
  EXPECT_EQ(sh("template -m " + model + " --vars " + vars).out, "[B]");
  for (const auto& f : {model, msgs, vars}) fs::remove(f);
}

TEST(TemplateCli, ErrorsAndUsage) {
  REQUIRE_FIXTURES();
  const std::string refusing = write_tmp("refuse.jinja", "ok\n{% if messages[0].role == 'system' %}\n"
                                                         "{{ raise_exception('System role not supported') }}{% endif %}");
  const std::string vars = kTemplates + "/conversations/system-user.json";
  auto r = sh("template --template " + refusing + " --vars " + vars, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "error: template line 3: System role not supported\n");
  r = sh("template --template " + refusing, true);  // neither --vars nor --messages
  EXPECT_EQ(r.code, 2) << r.out;
  r = sh("template --template " + refusing + " --vars " + vars + " --messages " + vars, true);
  EXPECT_EQ(r.code, 2) << r.out;
  r = sh("template -m " + kStories + " --vars " + vars, true);  // the stock model has no template
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("no tokenizer.chat_template"), std::string::npos) << r.out;
  r = sh("template --template " + refusing + " --messages " + vars, true);  // an object, not an array
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("expected a JSON array"), std::string::npos) << r.out;
  fs::remove(refusing);
}

struct ChatModel {
  CpuBackend be{CpuOptions{.threads = 1}};
  std::unique_ptr<LoadedModel> m;
  explicit ChatModel(const std::string& path) {
    auto r = LoadedModel::load(path, be);
    EXPECT_TRUE(r.ok()) << (r ? "" : r.error());
    if (r) m = std::move(*r);
  }
};

TEST(ChatRendererJinja, SpecialMarkersBecomeTheirIdsAndBosIsNotDoubled) {
  REQUIRE_FIXTURES();
  const std::string path = write_chat_variant("render.gguf", kChatML);
  ChatModel cm(path);
  ASSERT_TRUE(cm.m);
  const Tokenizer& tok = *cm.m->tokenizer;
  server::ChatRenderer r(tok, kChatML);
  EXPECT_EQ(r.format(), server::ChatFormat::Jinja);
  auto ids = r.apply(ojson::parse(R"([{"role": "user", "content": "Hi"}])"), nullptr);
  ASSERT_TRUE(ids.ok()) << ids.error();
  ASSERT_GE(ids->size(), 4u);
  EXPECT_EQ((*ids)[0], tok.bos());
  EXPECT_NE((*ids)[1], tok.bos());  // the template wrote BOS; none is added in front of it
  EXPECT_EQ((*ids)[1], kImStart);
  EXPECT_EQ(std::count(ids->begin(), ids->end(), kImStart), 2);
  EXPECT_EQ(std::count(ids->begin(), ids->end(), kImEnd), 1);
  fs::remove(path);
}

struct Served {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<server::Server> srv;
  int port = 0;
  Served(ChatModel& cm, const std::string& tmpl) {
    EngineConfig ec;
    ec.num_blocks = 64;
    auto e = Engine::create(*cm.m, cm.be, ec);
    EXPECT_TRUE(e.ok()) << (e ? "" : e.error());
    engine = std::move(*e);
    engine->start();
    server::ServerConfig sc;
    sc.chat_template = tmpl;
    srv = std::make_unique<server::Server>(*engine, sc);
    auto p = srv->start("127.0.0.1", 0);
    EXPECT_TRUE(p.ok());
    port = p ? *p : 0;
  }
  ~Served() {
    srv->stop(1.0);
    engine->stop(false);
  }
  httplib::Result post(const std::string& path, const std::string& body) const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c.Post(path.c_str(), body, "application/json");
  }
};

TEST(ServerChatTemplate, RendersToolsAndAnswers400NamingTheTemplateLine) {
  REQUIRE_FIXTURES();
  // A template in the style of real ones: tools as JSON, tool results, a refusal on line 2.
  const std::string tmpl =
      "{% for m in messages %}{% if m.role == 'system' %}\n{{ raise_exception('System role not supported') }}"
      "{% endif %}{% endfor %}{% if tools %}<|im_start|>tools\n{{ tools | tojson }}<|im_end|>\n{% endif %}"
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.tool_calls %}{{ m.tool_calls[0].function | tojson }}"
      "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";
  const std::string path = write_chat_variant("serve.gguf", tmpl);
  ChatModel cm(path);
  ASSERT_TRUE(cm.m);
  Served s(cm, tmpl);
  // Key order matters (tojson keeps it), so the body is built in the conversation file's order.
  const ojson conv = ojson::parse(slurp(kTemplates + "/conversations/tool-call-round-trip.json"));
  ojson body = {{"max_tokens", 4}, {"temperature", 0}};
  body["messages"] = conv["messages"];
  body["tools"] = conv["tools"];
  auto r = s.post("/v1/chat/completions", body.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  const int prompt_tokens = json::parse(r->body)["usage"]["prompt_tokens"];
  // What the template made of that request, tokenized as the server does: the same count.
  server::ChatRenderer renderer(*cm.m->tokenizer, tmpl);
  auto ids = renderer.apply(body["messages"], body["tools"]);
  ASSERT_TRUE(ids.ok()) << ids.error();
  EXPECT_EQ(prompt_tokens, int(ids->size()));
  auto text = renderer.render_text(body["messages"], body["tools"]);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find(R"("name": "get_weather", "description": "Current weather for a city")"), std::string::npos) << *text;
  EXPECT_NE(text->find("<|im_start|>tool\n{\"temp_c\": 21}<|im_end|>"), std::string::npos) << *text;

  body["messages"] = ojson::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])");
  r = s.post("/v1/chat/completions", body.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  const std::string msg = json::parse(r->body)["error"]["message"];
  EXPECT_NE(msg.find("template line 2: System role not supported"), std::string::npos) << msg;
  fs::remove(path);
}

TEST(ServerChatTemplate, UnparsableTemplateIsA400NotACrash) {
  REQUIRE_FIXTURES();
  const std::string tmpl = "{% for m in messages %}\n{{ m.content ";
  const std::string path = write_chat_variant("broken.gguf", tmpl);
  ChatModel cm(path);
  ASSERT_TRUE(cm.m);
  Served s(cm, tmpl);
  auto r = s.post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("line 2"), std::string::npos) << r->body;
  fs::remove(path);
}

TEST(EndOfGeneration, TokenizerKnowsEosEotAndTurnMarkers) {
  REQUIRE_FIXTURES();
  const std::string path = write_chat_variant("eog.gguf", "", 300);
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok());
  auto tok = Tokenizer::from_gguf(**f);
  ASSERT_TRUE(tok.ok());
  EXPECT_TRUE((*tok)->is_eog((*tok)->eos()));
  EXPECT_TRUE((*tok)->is_eog(300));      // tokenizer.ggml.eot_token_id
  EXPECT_TRUE((*tok)->is_eog(kImEnd));   // a control token spelled <|im_end|>
  EXPECT_FALSE((*tok)->is_eog(kImStart));
  EXPECT_FALSE((*tok)->is_eog(301));
  EXPECT_EQ((*tok)->eog_ids(), (std::vector<int32_t>{(*tok)->eos(), 300, kImEnd}));
  fs::remove(path);
}

// A real vocabulary: Phi-3 ends a reply with <|end|>, while its EOS is <|endoftext|>.
TEST(EndOfGeneration, Phi3VocabStopsAtEndOfTurn) {
  const std::string path = std::string(PAGODA_MODELS_DIR) + "/vocab/ggml-vocab-phi-3.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "no " << path;
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok());
  auto tok = Tokenizer::from_gguf(**f);
  ASSERT_TRUE(tok.ok()) << tok.error();
  int32_t end = -1;
  for (int32_t id = 0; id < (*tok)->vocab_size(); ++id)
    if ((*tok)->piece(id) == "<|end|>") end = id;
  ASSERT_GE(end, 0);
  EXPECT_NE(end, (*tok)->eos());
  EXPECT_TRUE((*tok)->is_eog(end));
  EXPECT_TRUE((*tok)->is_eog((*tok)->eos()));
  EXPECT_FALSE((*tok)->is_eog((*tok)->bos()));
}

// Greedy "Once upon a time" continues with a known token; a file that declares that token its EOT
// must end the completion right there with finish_reason "stop" (before: only EOS stopped it).
TEST(EndOfGeneration, ServerStopsAtTheFilesEotToken) {
  REQUIRE_FIXTURES();
  const json req = {{"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}};
  int32_t first = -1;
  {
    ChatModel plain(kStories);
    ASSERT_TRUE(plain.m);
    Served s(plain, "");
    auto r = s.post("/v1/completions", req.dump());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    const json j = json::parse(r->body);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    const std::string text = j["choices"][0]["text"];
    // The first generated token: the longest vocabulary entry the text starts with.
    const Tokenizer& tok = *plain.m->tokenizer;
    size_t best = 0;
    for (int32_t id = 0; id < tok.vocab_size(); ++id) {
      const std::string b = tok.token_bytes(300, id);
      // Ties go to the later id: a merged piece rather than the byte token with the same bytes.
      if (!b.empty() && b.size() >= best && text.compare(0, b.size(), b) == 0) best = b.size(), first = id;
    }
    ASSERT_GE(first, 0) << text;
  }
  const std::string path = write_chat_variant("eot.gguf", "", first);
  ChatModel cm(path);
  ASSERT_TRUE(cm.m);
  Served s(cm, "");
  auto r = s.post("/v1/completions", req.dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop") << r->body;
  EXPECT_EQ(j["choices"][0]["text"], "");
  fs::remove(path);
}

}  // namespace
}  // namespace pagoda
