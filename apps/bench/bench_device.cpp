// `pagoda bench device` (see bench_device.h).
#include "apps/bench/bench_device.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/engine/engine.h"

namespace pagoda::cli {
namespace {

struct Side {
  double tok_s = 0;
  uint64_t generated = 0, device_sampled = 0;
  std::vector<std::vector<int32_t>> tokens;
};

Result<Side> serve(LoadedModel& m, Backend& be, EngineConfig cfg, const std::vector<Request>& reqs) {
  auto e = Engine::create(m, be, cfg);
  if (!e) return e.take_error();
  Side side;
  side.tokens.resize(reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto r = (*e)->submit(reqs[i], [&side, i](const TokenEvent& ev) {
      if (ev.token >= 0) side.tokens[i].push_back(ev.token);
    });
    if (!r.ok()) return make_error("request rejected: " + r.message);
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (!(*e)->idle()) PAGODA_TRY((*e)->step());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  (*e)->publish_snapshot();
  const Counters c = (*e)->snapshot()->counters;
  side.generated = c.generated_tokens;
  side.device_sampled = c.device_sampled_tokens;
  side.tok_s = s > 0 ? double(c.generated_tokens) / s : 0;
  return side;
}

}  // namespace

int run_device_bench(const DeviceBenchOptions& o) {
  auto be = open_backend(o.be, o.json);
  if (!be) return fail(be.error());
  auto model = load_model(o.model, **be, o.json);
  if (!model) return fail(model.error());
  LoadedModel& m = **model;

  // Filters and penalties run on the device too (adjust_logits, filter_probs); "pen" is repetition
  // 1.1 over 64 tokens, presence 0.3, frequency 0.2.
  struct Setting {
    const char* name;
    float temperature;
    bool spec;
    int32_t top_k = 0;
    float top_p = 1.0f, min_p = 0.0f;
    bool penalties = false;
  };
  const Setting settings[] = {
      {"greedy", 0.0f, false, 0, 1.0f, 0.0f, false},
      {"greedy + pen", 0.0f, false, 0, 1.0f, 0.0f, true},
      {"temperature 0.8", 0.8f, false, 0, 1.0f, 0.0f, false},
      {"top-k 40", 0.8f, false, 40, 1.0f, 0.0f, false},
      {"top-p 0.9", 0.8f, false, 0, 0.9f, 0.0f, false},
      {"min-p 0.05", 0.8f, false, 0, 1.0f, 0.05f, false},
      {"40/0.95/0.05 + pen", 0.8f, false, 40, 0.95f, 0.05f, true},
      {"greedy + ngram k=4", 0.0f, true, 0, 1.0f, 0.0f, false},
      {"top-k 40 + ngram k=4", 0.8f, true, 40, 1.0f, 0.0f, false},
  };
  const char* prompts[] = {"Once upon a time", "Lily and Ben went to the park", "The little dog", "One day, a cat saw"};

  nlohmann::json rows = nlohmann::json::array();
  if (!o.json)
    fmt::print("{} streams x {} tokens on {} ({}), best of {}\n{:<22} {:>12} {:>12} {:>7} {:>14} {:>10}\n", o.streams, o.gen,
               (*be)->info().name, (*be)->info().device, o.repeats, "setting", "host tok/s", "device tok/s", "ratio",
               "device share", "identical");
  for (const Setting& st : settings) {
    std::vector<Request> reqs;
    for (int32_t i = 0; i < o.streams; ++i) {
      Request r;
      r.prompt = prompts[size_t(i) % std::size(prompts)];
      r.max_tokens = o.gen;
      r.stop_at_eos = false;
      r.sampling.temperature = st.temperature;
      r.sampling.top_k = st.top_k;
      r.sampling.top_p = st.top_p;
      r.sampling.min_p = st.min_p;
      if (st.penalties) {
        r.sampling.repeat_penalty = 1.1f;
        r.sampling.repeat_last_n = 64;
        r.sampling.presence_penalty = 0.3f;
        r.sampling.frequency_penalty = 0.2f;
      }
      r.sampling.seed = uint64_t(i) + 1;
      reqs.push_back(std::move(r));
    }
    EngineConfig cfg;
    cfg.prefix_caching = false;  // every run computes the same work
    if (st.spec) {
      cfg.spec.mode = "ngram";
      cfg.spec.k = 4;
    }
    Side best[2];
    bool identical = true;
    // Warm-up of each variant, then alternate so drift in machine load hits both alike.
    for (int rep = 0; rep <= o.repeats; ++rep) {
      for (int dev = 0; dev < 2; ++dev) {
        cfg.device_sampling = dev ? "on" : "off";
        auto side = serve(m, **be, cfg, reqs);
        if (!side) return fail(std::string(st.name) + ": " + side.error());
        if (rep == 0) {
          if (dev == 1 && st.temperature == 0.0f) identical = side->tokens == best[0].tokens;
          if (dev == 0) best[0].tokens = side->tokens;
          continue;
        }
        if (side->tok_s > best[dev].tok_s) {
          side->tokens.clear();
          best[dev] = std::move(*side);
        }
      }
    }
    const double ratio = best[0].tok_s > 0 ? best[1].tok_s / best[0].tok_s : 0;
    const double share = best[1].generated ? double(best[1].device_sampled) / double(best[1].generated) : 0;
    const std::string same = st.temperature == 0.0f ? (identical ? "yes" : "NO") : "n/a";
    if (o.json) {
      rows.push_back({{"setting", st.name}, {"host_tok_s", best[0].tok_s}, {"device_tok_s", best[1].tok_s},
                      {"ratio", ratio}, {"device_share", share}, {"greedy_identical", same}});
    } else {
      fmt::print("{:<22} {:>12.1f} {:>12.1f} {:>6.2f}x {:>13.0f}% {:>10}\n", st.name, best[0].tok_s, best[1].tok_s, ratio,
                 100 * share, same);
    }
    if (same == "NO") return fail(std::string(st.name) + ": greedy output differs between device and host sampling");
  }
  if (o.json) {
    nlohmann::json j = {{"workload", "device"}, {"backend", (*be)->info().name}, {"device", (*be)->info().device},
                        {"streams", o.streams}, {"gen_tokens", o.gen}, {"repeats", o.repeats}, {"results", rows}};
    fmt::print("{}\n", j.dump(2));
  }
  return 0;
}

}  // namespace pagoda::cli
