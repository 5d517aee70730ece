// Public prefixes from the server (`serve --public-prefix FILE`): system prompts every tenant may
// share. The engine keys a request's leading tokens in the public scope when they equal a declared
// token prefix (EngineConfig::public_prefixes); this file turns a prompt text into the token
// prefixes that completions and chat requests starting with it actually begin with.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "apps/server/chat_template.h"
#include "core/engine/engine.h"
#include "core/tokenizer/tokenizer.h"

namespace pagoda::server {

// The token prefixes a prompt starting with `text` shares whatever follows it: one for
// completions (BOS + text, as /v1/completions tokenizes it) and one for chat (the template
// rendered with `text` as the system message, up to where the next message begins). Each is the
// longest common prefix of the renderings with several different continuations, so a token that
// would merge with what a tenant writes next is never part of it. Empty results are dropped.
std::vector<std::vector<int32_t>> public_prefix_tokens(const std::string& text, const Tokenizer& tok, const ChatRenderer& chat);

// Reads each file (its whole text is one system prompt; one trailing newline is dropped) and adds
// its prefixes to `cfg.public_prefixes`. A missing, unreadable or empty file is an error naming it.
Status add_public_prefixes(const std::vector<std::string>& files, const Tokenizer& tok, const std::string& chat_template,
                           EngineConfig& cfg);

}  // namespace pagoda::server
