// `pagoda chat`: a conversation in the terminal through the model's chat template (the server's
// renderer, so a turn is the prompt /v1/chat/completions would build), streamed as it is generated,
// with a speed line after each answer. Reads lines from stdin, so it also runs from a pipe or file.
#include <fmt/core.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "apps/cli_common.h"
#include "apps/engine_options.h"
#include "apps/server/chat_template.h"
#include "apps/server/generation.h"
#include "core/engine/engine.h"

namespace pagoda::cli {
namespace {

using ojson = nlohmann::ordered_json;

// Ctrl-C while an answer streams stops that answer (the chat goes on); at the prompt it quits.
std::atomic<bool> g_generating{false}, g_interrupted{false};

void on_sigint(int) {
  if (g_generating.load()) {
    g_interrupted.store(true);
    return;
  }
  std::signal(SIGINT, SIG_DFL);
  std::raise(SIGINT);
}

struct ChatOptions {
  std::string model = default_model_path();
  std::string system;
  int32_t max_tokens = 256;
  SamplingParams sampling = [] {
    SamplingParams s;
    s.temperature = 0.8f;
    return s;
  }();
  bool seed_set = false;
  EngineOptions engine = [] {
    EngineOptions e;
    e.max_running = 1;  // one conversation
    return e;
  }();
};

constexpr const char* kHelp =
    "commands: /reset (start over, keeping --system), /save FILE (the conversation as JSON messages), "
    "/help, /quit (or end of input). A line ending in \\ continues on the next.\n";

// One conversation: the messages so far and the engine that answers them.
class ChatSession {
 public:
  ChatSession(Engine& e, const server::ChatRenderer& r, const ChatOptions& o) : engine_(e), renderer_(r), opts_(o) {
    seed_ = o.seed_set ? o.sampling.seed : (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
    reset();
  }

  void reset() {
    messages_ = ojson::array();
    if (!opts_.system.empty()) messages_.push_back({{"role", "system"}, {"content", opts_.system}});
  }

  Status save(const std::string& path) const {
    std::ofstream f(path, std::ios::binary);
    if (!f) return make_error("cannot write " + path);
    f << messages_.dump(2) << "\n";
    if (!f) return make_error("cannot write " + path);
    return {};
  }

  // Sends one user turn and streams the answer to stdout; the speed line goes to stderr.
  Status turn(const std::string& user) {
    messages_.push_back({{"role", "user"}, {"content", user}});
    auto st = answer();
    if (!st) messages_.erase(messages_.size() - 1);  // a turn that failed leaves no trace
    return st;
  }

 private:
  Status answer() {
    auto ids = renderer_.apply(messages_, ojson());
    if (!ids) return ids.take_error();
    const int32_t ctx = engine_.context_length(), n = int32_t(ids->size());
    if (n >= ctx)
      return make_error(fmt::format("the conversation has {} tokens and the context holds {}; /reset to start over", n, ctx));
    Request r;
    r.prompt_tokens = std::move(*ids);
    r.max_tokens = std::min(opts_.max_tokens, ctx - n);
    r.sampling = opts_.sampling;
    r.sampling.seed = seed_++;
    auto ch = std::make_shared<server::RequestChannel>();
    const SubmitResult sr = engine_.submit(std::move(r), server::RequestChannel::callback_for(ch));
    if (!sr.ok()) return make_error("rejected: " + (sr.message.empty() ? std::string(sr.reason()) : sr.message));
    // The plain transcript has no end-of-turn token: the model's next "user:" line ends the answer.
    server::StopMatcher stop(renderer_.format() == server::ChatFormat::Plain
                                 ? std::vector<std::string>{"\nuser:", "\nsystem:", "\nassistant:"}
                                 : std::vector<std::string>{});
    std::string text;
    TokenEvent last;
    bool cancelled = false;
    g_interrupted = false;
    g_generating = true;
    for (bool done = false; !done;) {
      std::vector<TokenEvent> evs;
      ch->take(evs, std::chrono::milliseconds(50));
      if (g_interrupted && !cancelled) {
        engine_.cancel(sr.id);
        cancelled = true;
      }
      for (auto& ev : evs) {
        std::string piece = stop.push(ev.text);
        if (ev.finished) piece += stop.flush();
        if (stop.stopped() && !cancelled) {
          engine_.cancel(sr.id);
          cancelled = true;
        }
        // An answer starts at its first visible character (the template left the space before it).
        if (text.empty()) piece.erase(0, piece.find_first_not_of(" \n"));
        fmt::print("{}", piece);
        std::fflush(stdout);
        text += piece;
        if (ev.finished) {
          last = std::move(ev);
          done = true;
          break;
        }
      }
    }
    g_generating = false;
    fmt::print("{}\n", g_interrupted ? " [interrupted]" : "");
    std::fflush(stdout);
    // Stopped by a stop string or by Ctrl-C: the text so far is the answer.
    const bool cancelled_by_stop = (stop.stopped() || g_interrupted) && last.reason == FinishReason::Cancelled;
    if (!cancelled_by_stop && last.reason != FinishReason::Eos && last.reason != FinishReason::Length)
      return make_error("generation failed: " + (last.error.empty() ? std::string(finish_reason_name(last.reason)) : last.error));
    const RequestMetrics& m = last.metrics;
    const double decode_s = m.e2e_s - m.ttft_s;
    fmt::print(stderr, "[{} tokens | {:.1f} tok/s | TTFT {:.1f} ms | prompt {} tokens, {} cached]\n", m.generated_tokens,
               m.generated_tokens > 1 && decode_s > 0 ? double(m.generated_tokens - 1) / decode_s : 0.0, m.ttft_s * 1e3,
               m.prompt_tokens, m.cached_tokens);
    messages_.push_back({{"role", "assistant"}, {"content", text}});
    return {};
  }

  Engine& engine_;
  const server::ChatRenderer& renderer_;
  const ChatOptions& opts_;
  ojson messages_;
  uint64_t seed_ = 0;
};

// A line, joined with the next while it ends in a backslash. False at the end of input.
bool read_input(std::string& out, bool tty) {
  out.clear();
  std::string line;
  auto prompt = [tty](const char* p) {
    if (!tty) return;
    fmt::print("{}", p);
    std::fflush(stdout);
  };
  prompt("> ");
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.back() != '\\') {
      out += line;
      return true;
    }
    line.pop_back();
    out += line + "\n";
    prompt(". ");
  }
  return !out.empty();
}

std::string chat_template_of(const LoadedModel& m) {
  auto t = m.file->get_string("tokenizer.chat_template");
  return t ? *t : std::string();
}

int chat(ChatOptions& o) {
  if (auto st = o.sampling.validate(); !st) return fail(st.error());
  if (o.max_tokens < 1) return fail("--max-tokens must be at least 1");
  auto cfg = engine_config(o.engine);
  if (!cfg) return fail(cfg.error());
  auto be = open_backend(backend_options(o.engine), true);
  if (!be) return fail(be.error());
  auto m = load_model(o.model, **be, true, DigestAt::Background);
  if (!m) return fail(m.error());
  auto engine = Engine::create(**m, **be, *cfg);
  if (!engine) return fail(engine.error());
  const server::ChatRenderer renderer((*engine)->tokenizer(), chat_template_of(**m));
  if (!renderer.template_error().empty()) return fail(renderer.template_error());
  (*engine)->start();
  const bool tty = isatty(STDIN_FILENO);
  std::signal(SIGINT, on_sigint);
  if (tty)
    fmt::print(stderr, "chat with {} (format: {}); /help for commands\n", o.model, server::chat_format_name(renderer.format()));
  ChatSession session(**engine, renderer, o);
  int rc = 0;
  std::string in;
  while (read_input(in, tty)) {
    if (in.find_first_not_of(" \t\n") == std::string::npos) continue;
    if (in == "/quit" || in == "/exit") break;
    if (in == "/help") {
      fmt::print(stderr, "{}", kHelp);
    } else if (in == "/reset") {
      session.reset();
      fmt::print(stderr, "(conversation reset)\n");
    } else if (in.rfind("/save", 0) == 0 && (in.size() == 5 || in[5] == ' ')) {
      const size_t from = in.find_first_not_of(' ', 5), to = in.find_last_not_of(' ');
      const std::string path = from == std::string::npos ? "" : in.substr(from, to + 1 - from);
      if (path.empty()) {
        fmt::print(stderr, "error: /save needs a file name\n");
        rc = 1;
      } else if (auto st = session.save(path); !st) {
        fmt::print(stderr, "error: {}\n", st.error());
        rc = 1;
      } else {
        fmt::print(stderr, "(saved to {})\n", path);
      }
    } else if (in[0] == '/' && in.find(' ') == std::string::npos) {
      fmt::print(stderr, "error: unknown command {}; {}", in, kHelp);
      rc = 1;
    } else if (auto st = session.turn(in); !st) {
      fmt::print(stderr, "error: {}\n", st.error());
      rc = 1;
    }
  }
  if (tty) fmt::print("\n");
  (*engine)->stop(false);
  // Interactive mistakes were reported as they happened; from a pipe they fail the run.
  return tty ? 0 : rc;
}

}  // namespace

void register_chat(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  auto* cmd = app.add_subcommand("chat", "Chat with a model in the terminal through its chat template");
  cmd->add_option("-m,--model", o->model, "GGUF model")->capture_default_str();
  cmd->add_option("--system", o->system, "System prompt (kept across /reset)");
  cmd->add_option("-n,--max-tokens", o->max_tokens, "Most tokens per answer")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1 = off)")->capture_default_str();
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0 = off)")->capture_default_str();
  cmd->add_option("-s,--seed", o->sampling.seed, "Sampling seed of the first answer (then +1 per answer; default: random)")
      ->each([o](const std::string&) { o->seed_set = true; });
  add_engine_options(cmd, o->engine, kKvMemoryFlag | kContextFlag | kBackendFlags);
  cmd->callback([o] {
    const int rc = chat(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
