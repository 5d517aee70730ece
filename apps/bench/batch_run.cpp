#include "apps/bench/batch_run.h"

#include <chrono>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "apps/bench/bench.h"
#include "core/util/file.h"

namespace pagoda {

Result<std::vector<Request>> parse_prompts(const std::string& text, const Request& defaults) {
  std::vector<Request> out;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();  // a CRLF line ending is a line ending
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Request r = defaults;
    if (line[line.find_first_not_of(" \t")] != '{') {
      r.prompt = line;
      out.push_back(std::move(r));
      continue;
    }
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return make_error("prompts line " + std::to_string(lineno) + ": invalid JSON");
    if (!j.contains("prompt") || !j["prompt"].is_string())
      return make_error("prompts line " + std::to_string(lineno) + ": needs a string \"prompt\"");
    r.prompt = j["prompt"].get<std::string>();
    auto get_int = [&](const char* k, int32_t& dst) -> Status {
      if (!j.contains(k)) return {};
      if (!j[k].is_number_integer()) return make_error("prompts line " + std::to_string(lineno) + ": \"" + k + "\" must be an integer");
      dst = j[k].get<int32_t>();
      return {};
    };
    PAGODA_TRY(get_int("priority", r.priority));
    PAGODA_TRY(get_int("max_tokens", r.max_tokens));
    if (j.contains("tenant")) {
      if (!j["tenant"].is_string()) return make_error("prompts line " + std::to_string(lineno) + ": \"tenant\" must be a string");
      r.tenant = j["tenant"].get<std::string>();
    }
    if (j.contains("timeout")) {
      if (!j["timeout"].is_number()) return make_error("prompts line " + std::to_string(lineno) + ": \"timeout\" must be a number");
      r.timeout_s = j["timeout"].get<double>();
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) return make_error("no prompts found");
  return out;
}

Result<std::vector<Request>> read_prompts_file(const std::string& path, const Request& defaults) {
  auto text = read_file(path);
  if (!text) return make_error("prompts file: " + text.error());
  auto r = parse_prompts(*text, defaults);
  if (!r) return make_error(path + ": " + r.error());
  return r;
}

std::vector<RequestOutcome> run_requests(Engine& e, const std::vector<Request>& reqs, bool step_inline,
                                         BatchSummary* summary) {
  std::vector<RequestOutcome> out(reqs.size());
  std::mutex mu;
  int remaining = int(reqs.size());
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto r = e.submit(reqs[i], [&, i](const TokenEvent& ev) {
      std::lock_guard<std::mutex> lk(mu);
      auto& o = out[i];
      if (ev.token >= 0) o.tokens.push_back(ev.token);
      o.text += ev.text;
      if (ev.finished) {
        o.reason = ev.reason;
        o.error = ev.error;
        o.metrics = ev.metrics;
        --remaining;
      }
    });
    out[i].id = r.id;
    if (!r.ok()) {
      std::lock_guard<std::mutex> lk(mu);
      out[i].reason = FinishReason::Rejected;
      out[i].error = std::string(r.reason()) + ": " + r.message;
      --remaining;
    }
  }
  for (;;) {
    {
      std::lock_guard<std::mutex> lk(mu);
      if (remaining == 0) break;
    }
    if (step_inline) {
      if (auto st = e.step(); !st) break;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  if (summary) {
    BatchSummary& s = *summary;
    s.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> ttft;
    double itl_sum = 0;
    int itl_n = 0;
    for (const auto& o : out) {
      if (o.reason == FinishReason::Rejected) { ++s.rejected; continue; }
      (o.reason == FinishReason::Length || o.reason == FinishReason::Eos) ? ++s.completed : ++s.other;
      s.prompt_tokens += uint64_t(o.metrics.prompt_tokens);
      s.cached_tokens += uint64_t(o.metrics.cached_tokens);
      s.generated_tokens += uint64_t(o.metrics.generated_tokens);
      if (o.metrics.generated_tokens > 0) ttft.push_back(o.metrics.ttft_s);
      if (o.metrics.generated_tokens > 1) { itl_sum += o.metrics.mean_itl_s; ++itl_n; }
    }
    s.gen_tok_s = s.wall_s > 0 ? double(s.generated_tokens) / s.wall_s : 0;
    s.ttft_p50_s = percentile(ttft, 50);
    s.ttft_p99_s = percentile(ttft, 99);
    s.itl_mean_s = itl_n ? itl_sum / itl_n : 0;
  }
  return out;
}

}  // namespace pagoda
