// `pagoda template`: render a chat template with a conversation and print exactly the prompt the
// model would see (no trailing newline added), to check a template or a conversation by eye.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "apps/cli_common.h"
#include "core/chat/template.h"
#include "core/gguf/gguf.h"
#include "core/tokenizer/tokenizer.h"

namespace pagoda::cli {
namespace {

using ojson = nlohmann::ordered_json;

struct TemplateOptions {
  std::string model;
  std::string template_path;
  std::string vars_path;
  std::string messages_path;
};

Result<ojson> read_json(const std::string& path) {
  auto text = read_file(path);
  if (!text) return text.take_error();
  try {
    return ojson::parse(*text);
  } catch (const std::exception& e) {
    return make_error(path + ": not valid JSON: " + e.what());
  }
}

// The template variables: the --vars object as given, or --messages wrapped as a chat that
// awaits the assistant's reply.
Result<ojson> load_vars(const TemplateOptions& o) {
  if (!o.vars_path.empty()) {
    auto j = read_json(o.vars_path);
    if (j && !j->is_object()) return make_error(o.vars_path + ": expected a JSON object of template variables");
    return j;
  }
  auto msgs = read_json(o.messages_path);
  if (!msgs) return msgs;
  if (!msgs->is_array()) return make_error(o.messages_path + ": expected a JSON array of messages");
  ojson vars = ojson::object();
  vars["messages"] = std::move(*msgs);
  vars["add_generation_prompt"] = true;
  return vars;
}

int run_template(const TemplateOptions& o) {
  auto vars = load_vars(o);
  if (!vars) return fail(vars.error());
  std::string source;
  if (!o.template_path.empty()) {
    auto t = read_file(o.template_path);
    if (!t) return fail(t.error());
    source = std::move(*t);
  }
  // The model supplies the template when none is given, and BOS/EOS text when the vars lack them.
  const std::string model = !o.model.empty() || o.template_path.empty() ? (o.model.empty() ? default_model_path() : o.model) : "";
  if (!model.empty()) {
    auto f = GgufFile::open(model);
    if (!f) return fail(f.error());
    if (o.template_path.empty()) {
      auto t = (*f)->get_string("tokenizer.chat_template");
      if (!t) return fail(model + " has no tokenizer.chat_template; pass --template FILE");
      source = std::move(*t);
    }
    auto tok = Tokenizer::from_gguf(**f);
    if (!tok) return fail(model + ": " + tok.error());
    if (!vars->contains("bos_token") && (*tok)->bos() >= 0) (*vars)["bos_token"] = (*tok)->piece((*tok)->bos());
    if (!vars->contains("eos_token") && (*tok)->eos() >= 0) (*vars)["eos_token"] = (*tok)->piece((*tok)->eos());
  }
  auto tmpl = ChatTemplate::parse(source);
  if (!tmpl) return fail(tmpl.error());
  auto text = tmpl->render(*vars);
  if (!text) return fail(text.error());
  fmt::print("{}", *text);
  return 0;
}

}  // namespace

void register_template(CLI::App& app) {
  auto o = std::make_shared<TemplateOptions>();
  auto* cmd = app.add_subcommand("template", "Render a chat template with a conversation and print the prompt");
  cmd->add_option("-m,--model", o->model, "GGUF file: its tokenizer.chat_template, BOS and EOS (default: the stock model)");
  cmd->add_option("--template", o->template_path, "Jinja template file (instead of the model's)");
  auto* vars = cmd->add_option("--vars", o->vars_path, "JSON object of template variables (messages, tools, add_generation_prompt, ...)");
  auto* msgs = cmd->add_option("--messages", o->messages_path, "JSON array of messages (add_generation_prompt is true)");
  vars->excludes(msgs);
  cmd->callback([o] {
    if (o->vars_path.empty() && o->messages_path.empty()) throw CLI::RequiredError("--vars or --messages");
    const int rc = run_template(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace pagoda::cli
