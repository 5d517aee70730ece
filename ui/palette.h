// Palette: the inspector's colours in one place, so panels agree (a tenant is the same colour in
// every view) and tests can look for the exact block-state colours in a screenshot.
#pragma once
#include <cstdint>

namespace pagoda::ui {

struct Rgb {
  uint8_t r, g, b;
};

// Block states as BlockInfo::state numbers them: 0 free, 1 in use, 2 cached (evictable).
inline constexpr Rgb kBlockFree{48, 52, 62};
inline constexpr Rgb kBlockInUse{64, 156, 255};
inline constexpr Rgb kBlockCached{255, 176, 46};
Rgb block_state_rgb(uint8_t state);

// Stable, well-separated colours for ids (requests, tenant hashes): golden-ratio hue steps.
Rgb id_rgb(uint64_t id);

// Series colours for charts.
inline constexpr Rgb kAccent{110, 200, 130};  // acceptance, hits
inline constexpr Rgb kWarn{240, 110, 90};     // evictions, rejections
inline constexpr Rgb kNeutral{170, 180, 200};

// ImGui's packed colour (IM_COL32 layout: A in the high byte, R in the low byte).
inline constexpr uint32_t packed(Rgb c, uint8_t a = 255) {
  return uint32_t(a) << 24 | uint32_t(c.b) << 16 | uint32_t(c.g) << 8 | uint32_t(c.r);
}

}  // namespace pagoda::ui
