// POST /v1/completions and /v1/chat/completions: parse, authenticate, tokenize, submit, then
// either wait for the whole completion or stream it as server-sent events.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "apps/server/server_internal.h"
#include "apps/server/sse.h"
#include "core/grammar/json_schema.h"

namespace pagoda::server {

namespace {

// Requests that name no seed still get a distinct one each; thread-local so no lock is shared.
uint64_t random_seed() {
  thread_local std::mt19937_64 rng{(uint64_t(std::random_device{}()) << 32) ^ std::random_device{}()};
  return rng();
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

HttpError shutting_down() { return {503, "the server is shutting down", "server_error", "shutting_down"}; }

std::optional<HttpError> apply_timeout_header(const http::Request& req, ParsedRequest& p) {
  if (!req.has_header("X-Request-Timeout")) return std::nullopt;
  auto t = parse_timeout_header(req.get_header_value("X-Request-Timeout"));
  if (!t) return HttpError{400, t.error(), "invalid_request_error", ""};
  p.timeout_s = p.timeout_s > 0 ? std::min(p.timeout_s, *t) : *t;  // the stricter deadline wins
  return std::nullopt;
}

// A finished chat choice with tools: the calls found in its text, and the text left as content.
void apply_tool_calls(const ToolSpec& spec, ChoiceResult& r) {
  if (spec.choice == ToolChoice::None) return;
  ToolParse tp = parse_tool_calls(r.text, spec.names);
  if (tp.calls.empty()) return;
  if (!spec.parallel) tp.calls.resize(1);
  r.text = std::move(tp.content);
  r.tool_calls = std::move(tp.calls);
  r.finish_reason = "tool_calls";
}

}  // namespace

void Server::Impl::route_openai() {
  transport.route("POST", "/v1/completions", [this](const http::Request& req, http::Response& res) {
    handle_generate(req, res, Endpoint::Completions);
  });
  transport.route("POST", "/v1/chat/completions", [this](const http::Request& req, http::Response& res) {
    handle_generate(req, res, Endpoint::Chat);
  });
}

// Renders and tokenizes the prompt (timed as part of the engine's normalize stage: see
// Request::received). Whether it fits the context and the KV pool is the engine's admission check
// (Engine::submit), whose typed rejection rejection_error() maps to 400/413.
std::optional<HttpError> Server::Impl::build_request(const ParsedRequest& p, const Principal& who, Request& r) {
  const int32_t ctx = engine.context_length();
  if (p.endpoint == Endpoint::Chat) {
    auto ids = chat.apply(p.chat_messages, p.chat_tools);  // a template error names its line
    if (!ids) return HttpError{400, ids.error(), "invalid_request_error", ""};
    r.prompt_tokens = std::move(*ids);
  } else if (!p.prompt_tokens.empty()) r.prompt_tokens = p.prompt_tokens;
  else r.prompt_tokens = engine.tokenizer().encode(p.prompt, true);
  const int32_t n = int32_t(r.prompt_tokens.size());
  // An explicit max_tokens is honoured up to the context (the engine ends at the context with
  // "length"); the default never asks for more than fits.
  r.max_tokens = p.max_tokens_set ? p.max_tokens : std::max(0, std::min(p.max_tokens, ctx - n));
  r.sampling = p.sampling;
  if (!p.seed_set) r.sampling.seed = random_seed();
  r.tenant = who.tenant;  // only ever from the authenticated key
  // The key grants a ceiling; a body may ask for less (a background job), never for more.
  r.priority = std::min(p.priority, who.max_priority);
  r.timeout_s = p.timeout_s;
  r.stop_at_eos = !p.ignore_eos;
  r.logprobs = p.logprobs;
  r.grammar = shared_grammar(p);
  return std::nullopt;
}

std::shared_ptr<const grammar::Grammar> Server::Impl::shared_grammar(const ParsedRequest& p) {
  if (!p.grammar) return nullptr;
  constexpr size_t kKept = 8;
  std::lock_guard<std::mutex> lk(grammar_mu);
  auto it = std::find_if(grammars.begin(), grammars.end(), [&](const auto& e) { return e.first == p.grammar_text; });
  std::pair<std::string, std::shared_ptr<const grammar::Grammar>> entry =
      it != grammars.end() ? std::move(*it) : std::make_pair(p.grammar_text, p.grammar);
  if (it != grammars.end()) grammars.erase(it);
  grammars.insert(grammars.begin(), std::move(entry));
  if (grammars.size() > kKept) grammars.pop_back();
  return grammars.front().second;
}

void Server::Impl::handle_generate(const http::Request& req, http::Response& res, Endpoint ep) {
  auto g = std::make_shared<Generation>();
  // One trace identity for the whole request: the caller's traceparent (or a new trace), with a
  // span of ours, returned on every answer, refusals included.
  g->trace = trace_for(req.get_header_value("traceparent"));
  g->meta.endpoint = ep;
  res.set_header("traceparent", g->trace.header());
  auto refuse = [&](const HttpError& e) {
    log_access(*g, e.status, e.code.empty() ? e.type : e.code);
    send_error(res, e);
  };
  if (stopping) return refuse(shutting_down());
  const auto who = authenticate(req, res);
  if (!who) return log_access(*g, 401, "invalid_api_key");
  g->tenant = who->tenant;
  auto parsed = parse_request(req.body, ep, limits);
  if (!parsed) return refuse({400, parsed.error(), "invalid_request_error", ""});
  if (auto e = apply_timeout_header(req, *parsed)) return refuse(*e);
  // OpenAI and vLLM answer a model they do not serve with 404 model_not_found; a request that
  // names no model gets the one this server serves.
  if (!parsed->model.empty() && parsed->model != cfg.model_name)
    return refuse({404, fmt::format("The model `{}` does not exist (this server serves `{}`; see /v1/models).",
                                    parsed->model, cfg.model_name), "invalid_request_error", "model_not_found"});
  if (auto e = prepare_tools(*parsed)) return refuse(*e);
  Request er;
  er.received = std::chrono::steady_clock::now();  // rendering and tokenizing count as normalize
  if (auto e = build_request(*parsed, *who, er)) return refuse(*e);
  er.trace_id = g->trace.trace_id;

  g->stream = parsed->stream;
  g->include_usage = parsed->include_usage;
  g->timeout_s = er.timeout_s;
  g->tools = std::move(parsed->tools);
  // OpenAI's echo gives back the prompt as text, also when it was sent as token ids.
  if (parsed->echo) g->echo = parsed->prompt_tokens.empty() ? parsed->prompt : detokenize(parsed->prompt_tokens);
  // n choices are n engine requests on one prompt; choice i samples with seed + i, so choice 0
  // is what the same request with n = 1 returns. The prompt is computed once: choices 1.. fork
  // choice 0's prompt blocks (Engine::submit_group, all or nothing).
  std::vector<Request> group;
  for (int32_t i = 0; i < parsed->n; ++i) {
    Request ri = er;
    ri.sampling.seed = er.sampling.seed + uint64_t(i);
    if (i > 0 && !parsed->seed_set) ri.sampling.seed = random_seed();
    group.push_back(std::move(ri));
  }
  const std::vector<SubmitResult> admitted =
      engine.submit_group(std::move(group), RequestChannel::callback_for(g->channel), true);
  if (!admitted.front().ok()) {
    const HttpError e = rejection_error(admitted.front().rejection, admitted.front().message);
    if (e.status == 429) res.set_header("Retry-After", std::to_string(retry_after_queue_full()));
    else if (e.status == 503) res.set_header("Retry-After", std::to_string(cfg.retry_after_s));
    return refuse(e);
  }
  for (int32_t i = 0; i < parsed->n; ++i) {
    Choice c;
    c.index = i;
    c.engine_id = admitted[size_t(i)].id;
    c.stop = StopMatcher(parsed->stop);
    c.logprobs = LogprobsBuilder(ep, &engine.tokenizer(), er.prompt_tokens.back());
    c.text = g->echo;
    c.chars = utf8_chars(g->echo);  // text_offset counts from the start of the returned text
    c.tools = ToolCallStream(g->tools.names);
    g->choices.push_back(std::move(c));
  }
  g->meta = {ep, fmt::format("{}-{:08x}{:06x}", ep == Endpoint::Chat ? "chatcmpl" : "cmpl", nonce, g->choices.front().engine_id),
             unix_now(), cfg.model_name};
  track(*g);
  if (parsed->stream) respond_stream(res, g);
  else respond_blocking(req, res, *g);
}

// tool_choice `required` or named: the schema the output must match, compiled here so that a
// tool whose parameters use an unsupported keyword is a 400 naming it.
std::optional<HttpError> Server::Impl::prepare_tools(ParsedRequest& p) {
  auto schema = forced_call_schema(p.tools);
  if (!schema) return HttpError{400, schema.error(), "invalid_request_error", ""};
  if (schema->is_null()) return std::nullopt;
  auto g = grammar::compile_json_schema(*schema);
  if (!g) return HttpError{400, "'tools' parameters: " + g.error(), "invalid_request_error", ""};
  // The call must parse: sampling, drafts and verification run under this grammar, as for
  // response_format (the two together would ask for two different documents).
  if (p.grammar)
    return HttpError{400, "'tool_choice' required or a named function cannot be combined with response_format or grammar",
                     "invalid_request_error", ""};
  p.grammar_text = "tool_choice:" + schema->dump();
  p.grammar = std::make_shared<const grammar::Grammar>(std::move(*g));
  p.tool_schema = std::move(*schema);
  return std::nullopt;
}

void Server::Impl::cancel(Choice& c) {
  if (c.cancelled) return;
  c.cancelled = true;
  engine.cancel(c.engine_id);
}

void Server::Impl::cancel_all(Generation& g) {
  for (Choice& c : g.choices)
    if (!c.done) cancel(c);
}

// Applies one engine event to its choice: the text goes through the stop matcher (a completed
// stop sequence cancels the engine request, so its blocks free up without generating further),
// the final event is kept. Returns the text the client may see now.
std::string Server::Impl::consume(Choice& c, TokenEvent& ev) {
  if (c.done) return "";
  if (ev.has_logprobs && !c.stopped) c.logprobs.add(ev, c.chars);
  c.chars += utf8_chars(ev.text);
  std::string piece = c.stop.push(ev.text);
  if (c.stop.stopped() && !c.stopped) {
    c.stopped = true;
    cancel(c);
  }
  if (ev.finished) {
    piece += c.stop.flush();
    c.done = true;
    c.final_event = std::move(ev);
  }
  return piece;
}

// Waits for every choice, checking between events whether the client is still connected: one
// that hung up gets its requests cancelled (their KV blocks freed) instead of run to the end.
void Server::Impl::respond_blocking(const http::Request& req, http::Response& res, Generation& g) {
  std::vector<TokenEvent> evs;
  bool gone = false;
  while (!g.all_done()) {
    evs.clear();
    if (!gone && req.client_gone && req.client_gone()) {
      gone = true;
      cancel_all(g);  // the final events still arrive (cancelled) and end this loop
      count_disconnect();
    }
    if (!g.channel->take(evs, std::chrono::milliseconds(100))) {
      if (g.channel->aborted()) break;
      continue;
    }
    for (auto& ev : evs)
      if (Choice* c = g.find(ev.request_id)) c->text += consume(*c, ev);
  }
  untrack(g);
  if (!g.all_done()) {
    cancel_all(g);
    log_access(g, 503, "shutting_down");
    return send_error(res, shutting_down());
  }
  std::vector<ChoiceResult> out;
  for (Choice& c : g.choices) {
    const Outcome o = outcome_of(c.final_event, c.stopped, g.timeout_s);
    if (o.error) {  // one failed choice fails the response
      log_access(g, o.error->status, "");
      return send_error(res, *o.error);
    }
    out.push_back({c.text, c.logprobs.take(), o.finish_reason, c.final_event.metrics, c.engine_id, {}});
    apply_tool_calls(g.tools, out.back());
  }
  log_access(g, 200, "");
  send_json(res, completion_json(g.meta, out));
}

void Server::Impl::respond_stream(http::Response& res, const std::shared_ptr<Generation>& g) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // reverse proxies must not buffer the stream
  // Never compressed: compression would hold tokens back in the deflate buffer until the end.
  res.set_chunked_content_provider(
      "text/event-stream", [this, g](size_t, http::DataSink& sink) { return pump_stream(*g, sink); },
      [this, g](bool) {
        // Runs however the response ended: a client that vanished before or during the stream
        // must not leave its requests generating into the void and holding KV blocks.
        cancel_all(*g);
        untrack(*g);
        log_access(*g, 200, g->all_done() ? "" : g->channel->aborted() ? "shutting_down" : "client_gone");
      });
}

// One turn of the stream: whatever events arrived (or a keep-alive comment after a quiet
// interval, whose failed write is how a silent disconnect is noticed).
bool Server::Impl::pump_stream(Generation& g, http::DataSink& sink) {
  std::vector<TokenEvent> evs;
  std::string out;
  if (!g.echo_sent) {
    g.echo_sent = true;
    if (!g.echo.empty())
      for (const Choice& c : g.choices) out += sse_data(chunk_json(g.meta, c.index, g.echo, nullptr));
  }
  const auto wait = std::chrono::milliseconds(std::max<int64_t>(10, int64_t(cfg.sse_keepalive_s * 1e3)));
  if (g.channel->take(evs, wait)) {
    out += stream_events(g, evs);
  } else if (g.channel->aborted()) {
    g.done = true;
    out = sse_data(error_json(shutting_down())) + std::string(kSseDone);
  } else {
    out = kSseKeepAlive;
  }
  // An empty write would end the chunked body early, so only non-empty output is written.
  if (!out.empty() && !sink.write(out.data(), out.size())) {
    if (!g.done) {
      cancel_all(g);
      count_disconnect();
    }
    return false;
  }
  if (g.done) sink.done();
  return true;
}

std::string Server::Impl::stream_events(Generation& g, std::vector<TokenEvent>& evs) {
  std::string out;
  for (auto& ev : evs) {
    if (g.done) break;
    Choice* c = g.find(ev.request_id);
    if (!c || c->done) continue;
    std::string piece = consume(*c, ev);
    if (g.tools.choice != ToolChoice::None) piece = c->tools.push(piece);
    // Log-probabilities ride with the text of their tokens; a token whose text the stop matcher
    // (or the tool-call holder) keeps back still sends its entry (with empty text), so every token
    // is reported once.
    const nlohmann::json lp = c->logprobs.take();
    if (!piece.empty() || !lp.is_null()) {
      if (g.meta.endpoint == Endpoint::Chat && !c->role_sent) {
        out += sse_data(chunk_json(g.meta, c->index, "", nullptr, true));
        c->role_sent = true;
      }
      out += sse_data(chunk_json(g.meta, c->index, piece, nullptr, false, lp));
    }
    if (c->done) out += closing_events(g, *c);
  }
  return out;
}

// The end of one choice: its finish chunk, or an error event that ends the whole stream (the
// other choices are cancelled). After the last choice: usage when asked, then [DONE].
std::string Server::Impl::closing_events(Generation& g, Choice& c) {
  const Outcome o = outcome_of(c.final_event, c.stopped, g.timeout_s);
  std::string out;
  if (o.error) {
    out += sse_data(error_json(*o.error));
    cancel_all(g);
    g.done = true;
    out += kSseDone;
    return out;
  }
  ToolParse tp;
  if (g.tools.choice != ToolChoice::None) tp = c.tools.finish();
  if (g.meta.endpoint == Endpoint::Chat && !c.role_sent) {
    nlohmann::json role = chunk_json(g.meta, c.index, "", nullptr, true);
    // As OpenAI's: a reply that is only tool calls opens with content null, not "".
    if (!tp.calls.empty() && tp.content.empty()) role["choices"][0]["delta"]["content"] = nullptr;
    out += sse_data(role);
    c.role_sent = true;
  }
  const char* finish = o.finish_reason;
  if (g.tools.choice != ToolChoice::None) {
    if (!tp.content.empty()) out += sse_data(chunk_json(g.meta, c.index, tp.content, nullptr));
    if (!tp.calls.empty()) {
      if (!g.tools.parallel) tp.calls.resize(1);
      out += sse_data(tool_calls_chunk_json(g.meta, c.index, tp.calls));
      finish = "tool_calls";
    }
  }
  out += sse_data(chunk_json(g.meta, c.index, "", finish));
  if (!g.all_done()) return out;
  g.done = true;
  if (g.include_usage) {
    std::vector<RequestMetrics> per_choice;
    for (const Choice& x : g.choices) per_choice.push_back(x.final_event.metrics);
    out += sse_data(usage_chunk_json(g.meta, usage_total(per_choice)));
  }
  out += kSseDone;
  return out;
}

}  // namespace pagoda::server
