// Shared pieces of the `pagoda` subcommands: backend + model loading with a progress bar, size
// parsing, and the exit-code convention (0 ok, 1 runtime error, 2 bad usage).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "core/model/loaded_model.h"
#include "core/util/file.h"

namespace pagoda::cli {

struct BackendOptions {
  std::string backend = "cpu";
  int device = -1;
  int threads = 0;
};
void add_backend_options(CLI::App* app, BackendOptions& o);
// --backend, --device, -t/--threads on these fields (add_backend_options and add_engine_options).
void add_backend_flags(CLI::App* app, std::string& backend, int& device, int& threads);
Result<BackendPtr> open_backend(const BackendOptions& o, bool quiet);

// When loading hashes the weights digest. Commands that serve requests (chat, serve, inspect, run
// with several prompts) hash in the background, so their first token does not wait for it;
// measuring and scoring commands hash before they start, so the hashing takes nothing from what
// they measure; a single prompt and draft models key no blocks and never hash.
using DigestAt = LoadOptions::Digest;

// Loads a model, drawing a progress bar on stderr for files over 64 MiB when stderr is a terminal.
Result<std::unique_ptr<LoadedModel>> load_model(const std::string& path, Backend& be, bool quiet,
                                                DigestAt digest = DigestAt::Load);

// "512MiB", "2GiB", "1.5GiB", "1000000" -> bytes; "1.2.3MiB" and sizes past 2^64 are errors.
Result<uint64_t> parse_size(const std::string& s);

// "a,b,,c" -> {"a", "b", "", "c"}; "" -> {""}.
std::vector<std::string> split_commas(const std::string& s);
// A number or comma-separated numbers, each item consumed whole ("0.5x", "" and "inf" are errors
// naming `flag`).
Result<std::vector<double>> parse_numbers(const std::string& s, const std::string& flag);
// The same, each an integer >= `min` that fits int32 ("4x", "2.5" and "1,,2" are errors).
Result<std::vector<int32_t>> parse_ints(const std::string& s, const std::string& flag, int32_t min);

std::string default_model_path();
int fail(const std::string& msg);  // prints "error: msg" to stderr, returns 1
// A prompt read from a file or stdin, as llama.cpp's -f takes it: one trailing '\n' dropped (the
// newline an editor or `echo` ends the text with is not part of the prompt).
std::string without_final_newline(std::string text);

void register_run(CLI::App& app);
void register_info(CLI::App& app);
void register_convert(CLI::App& app);
void register_bench(CLI::App& app);
void register_serve(CLI::App& app);
void register_conformance(CLI::App& app);
void register_template(CLI::App& app);
void register_eval(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_quantize(CLI::App& app);
void register_chat(CLI::App& app);
void register_inspect(CLI::App& app);  // only in builds with the UI

}  // namespace pagoda::cli
