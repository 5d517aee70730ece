#include "ui/screenshot.h"

#include <GL/gl.h>
#include <stb_image_write.h>

#include <cstring>
#include <fstream>

namespace pagoda::ui {

Image read_back_buffer(int width, int height) {
  Image img;
  img.width = width;
  img.height = height;
  img.rgba.resize(size_t(width) * size_t(height) * 4);
  glReadBuffer(GL_BACK);
  glPixelStorei(GL_PACK_ALIGNMENT, 1);
  glReadPixels(0, 0, width, height, GL_RGBA, GL_UNSIGNED_BYTE, img.rgba.data());
  // GL's origin is bottom-left; images (and the sidecar's rectangles) count rows from the top.
  const size_t row = size_t(width) * 4;
  std::vector<uint8_t> tmp(row);
  for (int y = 0; y < height / 2; ++y) {
    uint8_t* a = img.rgba.data() + size_t(y) * row;
    uint8_t* b = img.rgba.data() + size_t(height - 1 - y) * row;
    std::memcpy(tmp.data(), a, row);
    std::memcpy(a, b, row);
    std::memcpy(b, tmp.data(), row);
  }
  // The window has no use for alpha; keep the PNG opaque whatever blending left behind.
  for (size_t i = 3; i < img.rgba.size(); i += 4) img.rgba[i] = 255;
  return img;
}

Status write_screenshot(const std::string& path, const Image& img, const nlohmann::json& sidecar) {
  if (img.width <= 0 || img.height <= 0) return make_error("screenshot: empty image");
  if (!stbi_write_png(path.c_str(), img.width, img.height, 4, img.rgba.data(), img.width * 4))
    return make_error("screenshot: cannot write '" + path + "'");
  std::ofstream f(path + ".json");
  if (!f) return make_error("screenshot: cannot write '" + path + ".json'");
  f << sidecar.dump(2) << "\n";
  if (!f) return make_error("screenshot: write failed for '" + path + ".json'");
  return {};
}

}  // namespace pagoda::ui
