// SPIR-V modules compiled from shaders/*.comp at build time and embedded as bytes by
// embed_spirv.cmake (one entry per shader and per `//! variant` of it, e.g. "matmul_nosg").
#pragma once
#include <cstddef>
#include <span>
#include <string_view>

namespace pagoda::vk {

struct EmbeddedShader {
  const char* name;
  const unsigned char* bytes;
  size_t size;
};

// Defined in the generated embedded_shaders.cpp.
std::span<const EmbeddedShader> embedded_shaders();

inline const EmbeddedShader* find_embedded_shader(std::string_view name) {
  for (const auto& s : embedded_shaders())
    if (name == s.name) return &s;
  return nullptr;
}

}  // namespace pagoda::vk
