// `pagoda serve`: load a model, start the engine and the OpenAI-compatible HTTP server, and stop
// gracefully on SIGINT/SIGTERM (refuse new work, let in-flight requests finish for --grace
// seconds, cancel the rest, exit 0). All logic lives in apps/server where tests reach it.
#include <fmt/core.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <thread>

#include "apps/cli_common.h"
#include "apps/engine_options.h"
#include "apps/server/config.h"
#include "apps/server/public_prefix.h"
#include "apps/server/server.h"
#include "pagoda_version.h"  // PAGODA_GIT_COMMIT: the build_info gauge's version

namespace pagoda::cli {
namespace {

using server::ServeSettings;

struct ServeCommand {
  ServeSettings s;
  std::string config_path;
  CLI::App* cmd = nullptr;
};

void add_options(CLI::App* cmd, ServeCommand& c) {
  ServeSettings& s = c.s;
  cmd->add_option("--config", c.config_path, "JSON file with the same keys as these flags (flags win)");
  cmd->add_option("-m,--model", s.model, "GGUF model")->capture_default_str();
  add_engine_options(cmd, s, kServingFlags | kProbeFlag);
  cmd->add_option("--public-prefix", s.public_prefix,
                  "File holding a system prompt every tenant may share (its KV blocks are cached across tenants); repeatable");
  cmd->add_option("--host", s.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", s.port, "Port to listen on (0 = any free port)")->capture_default_str();
  cmd->add_option("--api-keys", s.api_keys,
                  "File of API keys -> tenants (JSON, or 'KEY TENANT [role=admin] [max_priority=N]' lines; docs/server.md)");
  cmd->add_option("--metrics-key", s.metrics_key, "Require 'Authorization: Bearer KEY' (or an admin API key) on /metrics");
  cmd->add_option("--grace", s.grace, "Seconds in-flight requests get to finish on shutdown")->capture_default_str();
  cmd->add_option("--http-threads", s.http_threads,
                  "Open HTTP connections, a thread each; more get 503 (0 = max-running + max-waiting + 16)");
  cmd->add_option("--header-timeout", s.header_timeout, "Seconds a request's whole head may take to arrive")->capture_default_str();
  cmd->add_option("--body-timeout", s.body_timeout, "Seconds a request's whole body may take to arrive")->capture_default_str();
  cmd->add_option("--default-max-tokens", s.default_max_tokens, "max_tokens for requests that name none")->capture_default_str();
  cmd->add_option("--max-body", s.max_body, "Largest request body, decoded (larger: 413)")->capture_default_str();
  cmd->add_option("--retry-after-max", s.retry_after_max,
                  "Most seconds a 429's Retry-After may ask for (it is computed from the measured drain rate)")->capture_default_str();
  cmd->add_option("--access-log", s.access_log, "A JSON line per request (trace id, tenant, tokens, stage times, outcome) "
                  "appended to FILE, or - for standard output");
}

Status merge_config(ServeCommand& c) {
  if (c.config_path.empty()) return {};
  auto j = server::read_config_file(c.config_path);
  if (!j) return j.take_error();
  return server::apply_config_json(*j, c.s, [&c](const std::string& key) {
    const CLI::Option* o = c.cmd->get_option_no_throw("--" + key);
    return o && o->count() > 0;
  });
}

std::string chat_template_of(const LoadedModel& m) {
  auto t = m.file->get_string("tokenizer.chat_template");
  return t ? *t : std::string();
}

// Waits for SIGINT/SIGTERM, then stops the server gracefully; a second signal cancels at once.
void wait_and_stop(server::Server& srv, const sigset_t& set, double grace) {
  int sig = 0;
  sigwait(&set, &sig);
  fmt::print(stderr, "\n{}: draining in-flight requests (up to {:g} s; signal again to cancel them now)\n",
             sig == SIGINT ? "SIGINT" : "SIGTERM", grace);
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    srv.stop(grace);
    done = true;
  });
  while (!done) {
    const timespec tick{0, 100 * 1000 * 1000};
    if (sigtimedwait(&set, nullptr, &tick) > 0) srv.cancel_all();
  }
  stopper.join();
}

int serve(ServeCommand& c) {
  ServeSettings& s = c.s;
  if (auto st = merge_config(c); !st) return fail(st.error());
  if (auto st = server::validate_settings(s); !st) return fail(st.error());
  auto ec = server::engine_config(s);  // --kv-memory: a size, or a share of free device memory ("90%")
  if (!ec) return fail(ec.error());
  auto max_body = parse_size(s.max_body);
  if (!max_body) return fail(max_body.error());
  server::ServerConfig sc;
  if (!s.api_keys.empty()) {
    auto keys = server::ApiKeys::load(s.api_keys);
    if (!keys) return fail(keys.error());
    sc.api_keys = std::move(*keys);
  }
  // Block the shutdown signals before any thread exists, so every thread inherits the mask and
  // sigwait() in this thread is the only place they are delivered. A shell starts background jobs
  // with SIGINT ignored, and an ignored signal never becomes pending; restore the default first.
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto be = open_backend(backend_options(s), false);
  if (!be) return fail(be.error());
  auto m = load_model(s.model, **be, false, DigestAt::Background);
  if (!m) return fail(m.error());
  std::unique_ptr<LoadedModel> draft;
  if (!s.draft.empty()) {
    auto d = load_model(s.draft, **be, false, DigestAt::Never);
    if (!d) return fail("draft model: " + d.error());
    draft = std::move(*d);
  }
  if (auto st = server::add_public_prefixes(s.public_prefix, *(*m)->tokenizer, chat_template_of(**m), *ec); !st)
    return fail(st.error());
  auto e = Engine::create(**m, **be, *ec, draft.get());
  if (!e) return fail(e.error());
  (*e)->start();

  sc.model_name = std::filesystem::path(s.model).stem().string();
  sc.chat_template = chat_template_of(**m);
  sc.http_threads = server::http_threads_for(s);
  sc.default_max_tokens = s.default_max_tokens;
  sc.max_body_bytes = size_t(*max_body);
  sc.metrics_key = s.metrics_key;
  sc.header_timeout_s = s.header_timeout;
  sc.body_timeout_s = s.body_timeout;
  sc.retry_after_max_s = s.retry_after_max;
  sc.access_log = s.access_log;
  sc.backend = (*be)->info().name;
  sc.device = (*be)->info().device;
  sc.version = PAGODA_GIT_COMMIT;
  const size_t tenants = sc.api_keys.size();
  server::Server srv(**e, std::move(sc));
  auto port = srv.start(s.host, s.port);
  if (!port) return fail(port.error());
  fmt::print(stderr, "pagoda serve: {} on http://{}:{} | {} | queue bound {} | Ctrl-C to stop\n",
             std::filesystem::path(s.model).filename().string(), s.host, *port,
             tenants ? fmt::format("{} API keys", tenants) : std::string("no API keys (single tenant)"), s.max_waiting);
  wait_and_stop(srv, set, s.grace);
  (*e)->stop(false);
  const auto snap = (*e)->snapshot();
  fmt::print(stderr, "stopped: {} requests finished, {} tokens generated\n", snap->counters.requests_finished,
             snap->counters.generated_tokens);
  return 0;
}

}  // namespace

void register_serve(CLI::App& app) {
  auto c = std::make_shared<ServeCommand>();
  c->s.model = default_model_path();
  c->cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (completions, chat, SSE, metrics, inspector feed)");
  add_options(c->cmd, *c);
  c->cmd->callback([c] {
    const int rc = serve(*c);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
