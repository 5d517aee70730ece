// Whole-file reads with one set of messages, for every command and the server's option files.
#pragma once
#include <string>

#include "core/util/result.h"

namespace pagoda {

// The file's bytes. Errors: "cannot open PATH", "cannot read PATH: it is a directory" (a
// directory opens as a stream on Linux and reads as nothing), "cannot read PATH".
Result<std::string> read_file(const std::string& path);

}  // namespace pagoda
