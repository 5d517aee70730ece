#include "apps/bench/bench_grammar.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/gguf/gguf.h"
#include "core/grammar/json_schema.h"
#include "core/grammar/matcher.h"
#include "core/tokenizer/tokenizer.h"

#ifndef PAGODA_MODELS_DIR
#define PAGODA_MODELS_DIR "../shared/models"
#endif

namespace pagoda::cli {
namespace {

using grammar::GrammarMatcher;
using grammar::TokenVocab;

struct Case {
  const char* name;
  const char* schema;    // JSON Schema text
  const char* document;  // a valid instance, walked token by token
};

const Case kCases[] = {
    {"json_object", R"({"type":"object"})",
     R"({"name": "Ada Lovelace", "born": 1815, "tags": ["math", "poetry"], "notes": {"engine": "analytical", "ok": true}})"},
    {"person",
     R"({"type":"object","properties":{"name":{"type":"string","maxLength":40},"age":{"type":"integer"},
        "email":{"type":"string","format":"email"},"tags":{"type":"array","items":{"type":"string"},"maxItems":5},
        "active":{"type":"boolean"}},"required":["name","age"]})",
     R"({"name": "Grace Hopper", "age": 85, "email": "grace@navy.mil", "tags": ["cobol", "compilers"], "active": false})"},
    {"enum_anyof",
     R"({"type":"object","properties":{"color":{"enum":["red","green","blue","cyan","magenta"]},
        "size":{"anyOf":[{"type":"number"},{"type":"null"}]},"when":{"type":"string","format":"date-time"}},
        "required":["color","size","when"]})",
     R"({"color": "magenta", "size": 12.75, "when": "2024-05-17T09:30:00Z"})"},
    {"records",
     R"({"type":"array","minItems":1,"maxItems":4,"items":{"type":"object","properties":{
        "id":{"type":"string","format":"uuid"},"score":{"type":"number"},"label":{"type":"string","maxLength":16}},
        "required":["id","score","label"]}})",
     R"([{"id": "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b", "score": 0.91, "label": "positive"}, {"id": "00000000-0000-4000-8000-000000000000", "score": -1.5, "label": "neg"}])"},
};

struct Sample {
  double cpu_us = 0, wall_us = 0;
};

struct Stats {
  double median_us = 0, p99_us = 0, wall_median_us = 0, wall_p99_us = 0;
  size_t n = 0;
};

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(double(v.size()) * q))];
}

Stats summarize(const std::vector<Sample>& samples) {
  Stats s;
  s.n = samples.size();
  if (samples.empty()) return s;
  std::vector<double> cpu, wall;
  for (const auto& x : samples) cpu.push_back(x.cpu_us), wall.push_back(x.wall_us);
  s.median_us = percentile(cpu, 0.5);
  s.p99_us = percentile(cpu, 0.99);
  s.wall_median_us = percentile(wall, 0.5);
  s.wall_p99_us = percentile(wall, 0.99);
  return s;
}

double thread_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e6 + double(ts.tv_nsec) * 1e-3;
}

// CPU time is the headline (a shared machine preempts the wall clock); wall time is kept too.
Sample time_mask(GrammarMatcher& m, const TokenVocab& v, std::vector<uint32_t>& mask) {
  const double c0 = thread_cpu_us();
  const auto t0 = std::chrono::steady_clock::now();
  m.fill_mask(v, mask);
  const auto t1 = std::chrono::steady_clock::now();
  return {thread_cpu_us() - c0, std::chrono::duration<double, std::micro>(t1 - t0).count()};
}

// Ids of `text` continuing earlier text (SentencePiece adds a "▁" at the start of an encoding,
// so encode after a newline and drop the tokens up to it).
std::vector<int32_t> mid_text_ids(const Tokenizer& tok, const TokenVocab& v, const std::string& text) {
  const auto ids = tok.encode("\n" + text, false);
  size_t start = 0;
  while (start < ids.size() && v.bytes(ids[start]) != "\n") ++start;
  return {ids.begin() + std::ptrdiff_t(std::min(start + 1, ids.size())), ids.end()};
}

struct CaseResult {
  std::string name;
  size_t tokens = 0;
  Stats cold, generation, cached;
};

Result<CaseResult> run_case(const Case& c, const Tokenizer& tok, const TokenVocab& v, int repeats) {
  auto g = grammar::compile_json_schema(nlohmann::ordered_json::parse(c.schema));
  if (!g) return make_error(std::string(c.name) + ": " + g.error());
  auto shared = std::make_shared<const grammar::Grammar>(std::move(*g));
  const auto ids = mid_text_ids(tok, v, c.document);
  std::vector<uint32_t> mask(v.mask_words());
  CaseResult r{c.name, ids.size(), {}, {}, {}};
  std::vector<Sample> cold, gen, cached;
  GrammarMatcher walker(shared);
  for (size_t i = 0; i <= ids.size(); ++i) {
    gen.push_back(time_mask(walker, v, mask));
    cached.push_back(time_mask(walker, v, mask));
    if (i < ids.size() && !walker.accept_token(v, ids[i]))
      return make_error(fmt::format("{}: the sample document's token {} is rejected by its own schema", c.name, i));
  }
  for (int rep = 0; rep < repeats; ++rep) {
    for (size_t i = 0; i <= ids.size(); ++i) {
      GrammarMatcher fresh(shared);  // a new automaton: nothing cached
      (void)fresh.accept_tokens(v, std::span(ids).first(i));
      cold.push_back(time_mask(fresh, v, mask));
    }
  }
  r.cold = summarize(cold);
  r.generation = summarize(gen);
  r.cached = summarize(cached);
  return r;
}

nlohmann::json stats_json(const Stats& s) {
  return {{"median_us", s.median_us}, {"p99_us", s.p99_us}, {"wall_median_us", s.wall_median_us},
          {"wall_p99_us", s.wall_p99_us}, {"masks", s.n}};
}

}  // namespace

int run_grammar_bench(const GrammarBenchOptions& o) {
  const std::string path = o.vocab.empty() ? std::string(PAGODA_MODELS_DIR) + "/vocab/ggml-vocab-llama-spm.gguf" : o.vocab;
  auto file = GgufFile::open(path);
  if (!file) return fmt::print(stderr, "error: {}\n", file.error()), 1;
  auto tok = Tokenizer::from_gguf(**file);
  if (!tok) return fmt::print(stderr, "error: {}: {}\n", path, tok.error()), 1;
  if (o.repeats < 1) return fmt::print(stderr, "error: --repeats must be at least 1\n"), 1;
  const auto t0 = std::chrono::steady_clock::now();
  const TokenVocab vocab = TokenVocab::from_tokenizer(**tok);
  const double build_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json j = {{"workload", "grammar"}, {"vocab", path}, {"vocab_size", vocab.size()},
                      {"trie_nodes", vocab.trie().size()}, {"vocab_build_ms", build_ms}, {"repeats", o.repeats},
                      {"timing", "thread CPU microseconds (wall_* : wall clock) per fill_mask call over the whole vocabulary, one thread; "
                                 "cold: first mask of a state on a fresh matcher; generation: masks along the "
                                 "document as caches fill; cached: the same state masked again"}};
  j["cases"] = nlohmann::json::array();
  std::string text = fmt::format("mask time per token over {} tokens ({} trie nodes, built in {:.0f} ms), thread CPU microseconds\n\n"
                                 "{:<12} {:>6}  {:>16}  {:>16}  {:>16}\n{:<12} {:>6}  {:>7} {:>8}  {:>7} {:>8}  {:>7} {:>8}\n",
                                 vocab.size(), vocab.trie().size(), build_ms, "schema", "tokens", "cold", "generation",
                                 "cached", "", "", "median", "p99", "median", "p99", "median", "p99");
  for (const auto& c : kCases) {
    auto r = run_case(c, **tok, vocab, o.repeats);
    if (!r) return fmt::print(stderr, "error: {}\n", r.error()), 1;
    text += fmt::format("{:<12} {:>6}  {:>7.1f} {:>8.1f}  {:>7.1f} {:>8.1f}  {:>7.1f} {:>8.1f}\n", r->name, r->tokens,
                        r->cold.median_us, r->cold.p99_us, r->generation.median_us, r->generation.p99_us,
                        r->cached.median_us, r->cached.p99_us);
    j["cases"].push_back({{"name", r->name}, {"tokens", r->tokens}, {"cold", stats_json(r->cold)},
                          {"generation", stats_json(r->generation)}, {"cached", stats_json(r->cached)}});
  }
  if (o.json) fmt::print("{}\n", j.dump(2));
  else fmt::print("{}", text);
  return 0;
}

}  // namespace pagoda::cli
