// Theme: fonts and colours of the inspector window. Works without any font file (falls back to
// ImGui's built-in font), so headless tests and minimal systems draw the same panels.
#pragma once
#include <imgui.h>

namespace pagoda::ui {

// Adds the UI font (and a larger one for headline numbers) to the current context's atlas.
// Returns false when no TrueType font was found and the built-in one is used.
bool load_fonts(float size_px);
void apply_theme();
// The headline font, or nullptr when only the default font exists.
ImFont* big_font();

// Text in the headline font when there is one.
void big_text(const char* text);

}  // namespace pagoda::ui
