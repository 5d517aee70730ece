#include "ui/palette.h"

#include <cmath>

namespace pagoda::ui {

Rgb block_state_rgb(uint8_t state) {
  switch (state) {
    case 1: return kBlockInUse;
    case 2: return kBlockCached;
    default: return kBlockFree;
  }
}

Rgb id_rgb(uint64_t id) {
  // Golden-ratio hue steps: consecutive request ids land far apart on the colour wheel.
  const double h = std::fmod(double(id % 4096) * 0.618033988749895, 1.0);
  const double s = 0.55, v = 0.92;
  const double hh = h * 6.0;
  const int i = int(hh) % 6;
  const double f = hh - std::floor(hh);
  const double p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  double r = v, g = t, b = p;
  switch (i) {
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    case 5: r = v; g = p; b = q; break;
    default: break;
  }
  return {uint8_t(r * 255), uint8_t(g * 255), uint8_t(b * 255)};
}

}  // namespace pagoda::ui
