// Screenshot: the rendered frame as a PNG plus a sidecar JSON naming where each panel is, so
// tests (and docs tooling) can check a panel's pixels without guessing the layout.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/util/result.h"

namespace pagoda::ui {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgba;  // top row first
};

// The current GL context's back buffer (call after rendering, before the swap).
Image read_back_buffer(int width, int height);

// Writes `path` (PNG) and `path + ".json"` (the sidecar).
Status write_screenshot(const std::string& path, const Image& img, const nlohmann::json& sidecar);

}  // namespace pagoda::ui
