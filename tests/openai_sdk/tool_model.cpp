// Writes the constructed tool-calling model of tool_model.h for the OpenAI SDK test.
// Usage: openai_sdk_tool_model OUT.gguf [TEMPLATE.jinja]
#include <cstdio>
#include <fstream>
#include <sstream>

#include "tests/openai_sdk/tool_model.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT.gguf [TEMPLATE.jinja]\n", argv[0]);
    return 2;
  }
  std::string tmpl;
  if (argc > 2) {
    std::ifstream f(argv[2], std::ios::binary);
    if (!f) {
      std::fprintf(stderr, "cannot read %s\n", argv[2]);
      return 1;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    tmpl = ss.str();
  }
  if (auto st = pagoda::testing::write_tool_call_model(argv[1], tmpl); !st) {
    std::fprintf(stderr, "error: %s\n", st.error().c_str());
    return 1;
  }
  return 0;
}
