#include "core/telemetry/snapshot_json.h"

namespace pagoda {
namespace {

using nlohmann::json;

json hist_json(const Histogram& h) {
  return {{"bounds", h.bounds()}, {"counts", h.counts()}, {"sum", h.sum()}, {"count", h.count()},
          {"p50", h.quantile(0.5)}, {"p99", h.quantile(0.99)}};
}

Histogram hist_from(const json& j, const Histogram& shape) {
  if (!j.is_object() || !j.contains("bounds") || !j.contains("counts")) return shape;
  auto bounds = j["bounds"].get<std::vector<double>>();
  auto counts = j["counts"].get<std::vector<uint64_t>>();
  if (bounds.empty() || counts.size() != bounds.size() + 1) return shape;
  return Histogram::from_parts(std::move(bounds), std::move(counts), j.value("sum", 0.0));
}

}  // namespace

json snapshot_to_json(const Snapshot& s, bool include_blocks) {
  const Counters& c = s.counters;
  json j = {{"step", s.step}, {"uptime_s", s.uptime_s}, {"block_size", s.block_size}, {"num_blocks", s.num_blocks},
            {"blocks_free", s.blocks_free}, {"blocks_in_use", s.blocks_in_use}, {"blocks_cached", s.blocks_cached},
            {"kv_usage", s.kv_usage}, {"waiting", s.waiting}, {"running", s.running}, {"paused", s.paused},
            {"spec_k", s.spec_k}, {"spec_mode", s.spec_mode}, {"degraded", s.degraded},
            {"degraded_reason", s.degraded_reason}};
  j["counters"] = {{"requests_submitted", c.requests_submitted}, {"requests_finished", c.requests_finished},
                   {"prompt_tokens", c.prompt_tokens}, {"avoided_prefill_tokens", c.avoided_prefill_tokens},
                   {"computed_prefill_tokens", c.computed_prefill_tokens}, {"generated_tokens", c.generated_tokens},
                   {"prefix_query_tokens", c.prefix_query_tokens}, {"prefix_hit_tokens", c.prefix_hit_tokens},
                   {"preemptions", c.preemptions}, {"evictions", c.evictions}, {"spec_steps", c.spec_steps},
                   {"preemption_failures", c.preemption_failures}, {"backend_faults", c.backend_faults},
                   {"spec_verify_steps", c.spec_verify_steps}, {"spec_decisions", c.spec_decisions},
                   {"device_sampled_tokens", c.device_sampled_tokens},
                   {"mean_acceptance_length", mean_acceptance_length(c)},
                   {"spec_proposed", c.spec_proposed}, {"spec_accepted", c.spec_accepted},
                   {"spec_accepted_by_pos", c.spec_accepted_by_pos}, {"spec_proposed_by_pos", c.spec_proposed_by_pos},
                   {"rejections", c.rejections}, {"finished", c.finished}, {"per_tenant", c.per_tenant}};
  j["histograms"] = {{"ttft", hist_json(s.hist.ttft)}, {"itl", hist_json(s.hist.itl)}, {"e2e", hist_json(s.hist.e2e)},
                     {"queue", hist_json(s.hist.queue)}, {"accept_len", hist_json(s.hist.accept_len)},
                     {"request_accept_len", hist_json(s.hist.request_accept_len)}};
  for (size_t i = 0; i < s.hist.stage.size(); ++i) j["histograms"]["stage"][stage_name(Stage(i))] = hist_json(s.hist.stage[i]);
  j["requests"] = json::array();
  for (const auto& r : s.requests)
    j["requests"].push_back({{"id", r.id}, {"tenant", r.tenant}, {"state", r.state}, {"priority", r.priority},
                             {"prompt_tokens", r.prompt_tokens}, {"cached_tokens", r.cached_tokens},
                             {"computed_tokens", r.computed_tokens}, {"generated", r.generated}, {"max_tokens", r.max_tokens},
                             {"blocks", r.blocks}, {"ttft_ms", r.ttft_ms}, {"tok_s", r.tok_s}, {"age_ms", r.age_ms},
                             {"deadline_left_ms", r.deadline_left_ms}, {"spec_proposed", r.spec_proposed},
                             {"spec_accepted", r.spec_accepted}, {"spec_k", r.spec_k}, {"trace_id", r.trace_id}});
  j["accept_rate_history"] = s.accept_rate_history;
  j["kv_usage_history"] = s.kv_usage_history;
  j["decisions"] = json::array();
  for (const auto& d : s.decisions) j["decisions"].push_back({{"step", d.step}, {"from_k", d.from_k}, {"to_k", d.to_k}, {"reason", d.reason}, {"kind", d.kind}});
  if (include_blocks) {
    // Blocks as parallel arrays: compact for the SSE stream at thousands of blocks.
    json st = json::array(), ref = json::array(), own = json::array(), ten = json::array(), key = json::array(),
         pos = json::array(), lu = json::array();
    for (const auto& b : s.blocks) {
      st.push_back(b.state); ref.push_back(b.refcount); own.push_back(b.owner); ten.push_back(b.tenant);
      key.push_back(b.key_prefix); pos.push_back(b.pos_start); lu.push_back(b.last_use);
    }
    j["blocks"] = {{"state", st}, {"refcount", ref}, {"owner", own}, {"tenant", ten}, {"key_prefix", key},
                   {"pos_start", pos}, {"last_use", lu}};
  }
  return j;
}

Result<Snapshot> snapshot_from_json(const json& j) {
  try {
    Snapshot s;
    auto get = [&](const char* k, auto& dst) { if (j.contains(k)) dst = j[k].get<std::decay_t<decltype(dst)>>(); };
    get("step", s.step); get("uptime_s", s.uptime_s); get("block_size", s.block_size); get("num_blocks", s.num_blocks);
    get("blocks_free", s.blocks_free); get("blocks_in_use", s.blocks_in_use); get("blocks_cached", s.blocks_cached);
    get("kv_usage", s.kv_usage); get("waiting", s.waiting); get("running", s.running); get("paused", s.paused);
    get("spec_k", s.spec_k); get("spec_mode", s.spec_mode); get("degraded", s.degraded);
    get("degraded_reason", s.degraded_reason);
    get("accept_rate_history", s.accept_rate_history); get("kv_usage_history", s.kv_usage_history);
    if (j.contains("counters")) {
      const auto& c = j["counters"];
      auto cg = [&](const char* k, auto& dst) { if (c.contains(k)) dst = c[k].get<std::decay_t<decltype(dst)>>(); };
      Counters& o = s.counters;
      cg("requests_submitted", o.requests_submitted); cg("requests_finished", o.requests_finished);
      cg("prompt_tokens", o.prompt_tokens); cg("avoided_prefill_tokens", o.avoided_prefill_tokens);
      cg("computed_prefill_tokens", o.computed_prefill_tokens); cg("generated_tokens", o.generated_tokens);
      cg("prefix_query_tokens", o.prefix_query_tokens); cg("prefix_hit_tokens", o.prefix_hit_tokens);
      cg("preemptions", o.preemptions); cg("evictions", o.evictions); cg("spec_steps", o.spec_steps);
      cg("spec_proposed", o.spec_proposed); cg("spec_accepted", o.spec_accepted);
      cg("preemption_failures", o.preemption_failures); cg("backend_faults", o.backend_faults);
      cg("spec_verify_steps", o.spec_verify_steps); cg("spec_decisions", o.spec_decisions);
      cg("device_sampled_tokens", o.device_sampled_tokens);
      cg("spec_accepted_by_pos", o.spec_accepted_by_pos); cg("spec_proposed_by_pos", o.spec_proposed_by_pos);
      cg("rejections", o.rejections); cg("finished", o.finished); cg("per_tenant", o.per_tenant);
    }
    if (j.contains("histograms")) {
      const auto& h = j["histograms"];
      if (h.contains("ttft")) s.hist.ttft = hist_from(h["ttft"], s.hist.ttft);
      if (h.contains("itl")) s.hist.itl = hist_from(h["itl"], s.hist.itl);
      if (h.contains("e2e")) s.hist.e2e = hist_from(h["e2e"], s.hist.e2e);
      if (h.contains("queue")) s.hist.queue = hist_from(h["queue"], s.hist.queue);
      if (h.contains("accept_len")) s.hist.accept_len = hist_from(h["accept_len"], s.hist.accept_len);
      if (h.contains("request_accept_len")) s.hist.request_accept_len = hist_from(h["request_accept_len"], s.hist.request_accept_len);
      if (h.contains("stage"))
        for (size_t i = 0; i < s.hist.stage.size(); ++i)
          if (h["stage"].contains(stage_name(Stage(i)))) s.hist.stage[i] = hist_from(h["stage"][stage_name(Stage(i))], s.hist.stage[i]);
    }
    if (j.contains("requests"))
      for (const auto& r : j["requests"]) {
        RequestInfo x;
        auto rg = [&](const char* k, auto& dst) { if (r.contains(k)) dst = r[k].get<std::decay_t<decltype(dst)>>(); };
        rg("id", x.id); rg("tenant", x.tenant); rg("state", x.state); rg("priority", x.priority);
        rg("prompt_tokens", x.prompt_tokens); rg("cached_tokens", x.cached_tokens); rg("computed_tokens", x.computed_tokens);
        rg("generated", x.generated); rg("max_tokens", x.max_tokens); rg("blocks", x.blocks); rg("ttft_ms", x.ttft_ms);
        rg("tok_s", x.tok_s); rg("age_ms", x.age_ms); rg("deadline_left_ms", x.deadline_left_ms);
        rg("spec_proposed", x.spec_proposed); rg("spec_accepted", x.spec_accepted); rg("spec_k", x.spec_k);
        rg("trace_id", x.trace_id);
        s.requests.push_back(std::move(x));
      }
    if (j.contains("decisions"))
      for (const auto& d : j["decisions"])
        s.decisions.push_back({d.value("step", uint64_t(0)), d.value("from_k", 0), d.value("to_k", 0), d.value("reason", std::string()), d.value("kind", std::string())});
    if (j.contains("blocks")) {
      const auto& b = j["blocks"];
      const size_t n = b["state"].size();
      s.blocks.resize(n);
      for (size_t i = 0; i < n; ++i) {
        BlockInfo& x = s.blocks[i];
        x.state = b["state"][i].get<uint8_t>();
        x.refcount = b["refcount"][i].get<int32_t>();
        x.owner = b["owner"][i].get<uint64_t>();
        x.tenant = b["tenant"][i].get<uint32_t>();
        x.key_prefix = b["key_prefix"][i].get<uint32_t>();
        x.pos_start = b["pos_start"][i].get<int32_t>();
        x.last_use = b["last_use"][i].get<uint64_t>();
      }
    }
    return s;
  } catch (const nlohmann::json::exception& e) {
    return make_error(std::string("malformed snapshot JSON: ") + e.what());
  }
}

}  // namespace pagoda
