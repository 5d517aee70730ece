// A small raster chart renderer: lines, bars, axes with numbered ticks, a legend and titles on an
// RGB canvas, text from stb_easy_font's quads, written by stb_image_write.
#include "apps/bench/bench_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

namespace pagoda::cli {
namespace {

struct Rgb {
  uint8_t r, g, b;
};
constexpr Rgb kBlack{0, 0, 0}, kGrid{225, 225, 225}, kWhite{255, 255, 255};
constexpr Rgb kPalette[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}, {140, 86, 75}};

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(size_t(w) * size_t(h) * 3, 255) {}
  int width() const { return w_; }
  int height() const { return h_; }
  void fill(double x0, double y0, double x1, double y1, Rgb c) {
    const int a = std::max(0, int(std::lround(std::min(x0, x1)))), b = std::min(w_, int(std::lround(std::max(x0, x1))));
    const int top = std::max(0, int(std::lround(std::min(y0, y1)))), bot = std::min(h_, int(std::lround(std::max(y0, y1))));
    for (int y = top; y < bot; ++y)
      for (int x = a; x < b; ++x) {
        uint8_t* p = &px_[(size_t(y) * size_t(w_) + size_t(x)) * 3];
        p[0] = c.r, p[1] = c.g, p[2] = c.b;
      }
  }
  // A line `thick` pixels wide, stamped as squares along its length.
  void line(double x0, double y0, double x1, double y1, Rgb c, double thick = 1) {
    const int steps = std::max(1, int(std::ceil(std::max(std::abs(x1 - x0), std::abs(y1 - y0)))));
    for (int i = 0; i <= steps; ++i) {
      const double t = double(i) / steps, x = x0 + (x1 - x0) * t, y = y0 + (y1 - y0) * t;
      fill(x - thick / 2, y - thick / 2, x + thick / 2, y + thick / 2, c);
    }
  }
  static double text_width(const std::string& s, double scale) {
    std::string tmp = s;
    return stb_easy_font_width(tmp.data()) * scale;
  }
  // Text with its top-left corner at (x, y); stb_easy_font's quads are axis-aligned rectangles.
  void text(double x, double y, const std::string& s, double scale, Rgb c = kBlack) {
    std::string tmp = s;
    std::vector<char> buf(tmp.size() * 64 * 24 + 64);  // room for every segment quad of every glyph
    const int quads = stb_easy_font_print(0, 0, tmp.data(), nullptr, buf.data(), int(buf.size()));
    for (int q = 0; q < quads; ++q) {
      const float* v = reinterpret_cast<const float*>(buf.data() + size_t(q) * 64);  // 4 vertices x 16 bytes
      fill(x + v[0] * scale, y + v[1] * scale, x + v[8] * scale, y + v[9] * scale, c);
    }
  }
  bool write_png(const std::string& path) const { return stbi_write_png(path.c_str(), w_, h_, 3, px_.data(), w_ * 3) != 0; }

 private:
  int w_, h_;
  std::vector<uint8_t> px_;
};

struct Series {
  std::string name;
  std::vector<double> x, y;  // x unused by bar panels (one y per category)
};

struct Panel {
  enum Kind { Lines, Bars, HBars } kind = Lines;
  std::string title, xlabel, ylabel;
  std::vector<std::string> categories;  // Bars / HBars
  std::vector<Series> series;
  bool log_value = false;   // log10 value axis (HBars) or log2 x axis (Lines)
  bool ticks_at_data = false;
};

std::string num(double v) {
  char b[32];
  const double a = std::abs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-3)) std::snprintf(b, sizeof b, "%.0e", v);
  else if (a >= 100 || v == std::round(v)) std::snprintf(b, sizeof b, "%.0f", v);
  else if (a >= 10) std::snprintf(b, sizeof b, "%.1f", v);
  else if (a >= 1) std::snprintf(b, sizeof b, "%.2f", v);
  else std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

// About `n` round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]; widens hi to the last tick.
std::vector<double> nice_ticks(double lo, double& hi, int n = 5) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / n, mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) { step = m * mag; break; }
  std::vector<double> t;
  for (double v = std::floor(lo / step) * step; v <= hi + step * 0.999; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  hi = t.back();
  return t;
}

constexpr double kScale = 2.0;                    // tick and legend text
constexpr double kCharH = 7 * kScale;             // cap height of easy_font at that scale

// One row of swatches and names above the plot area, ending at x = `right`, so it never hides data.
void draw_legend(Canvas& c, const Panel& p, double right, double y) {
  if (p.series.size() < 2 && p.series.front().name.empty()) return;
  double total = 0;
  for (const auto& s : p.series) total += 20 + Canvas::text_width(s.name, kScale) + 18;
  double x = right - total;
  for (size_t i = 0; i < p.series.size(); ++i) {
    c.fill(x, y, x + 14, y + 14, kPalette[i % 6]);
    c.text(x + 20, y, p.series[i].name, kScale);
    x += 20 + Canvas::text_width(p.series[i].name, kScale) + 18;
  }
}

void draw_panel(Canvas& c, const Panel& p, double ox, double oy, double w, double h) {
  const double tw = Canvas::text_width(p.title, 2.5);
  c.text(ox + (w - tw) / 2, oy + 10, p.title, 2.5);
  double label_w = 0;
  for (const auto& cat : p.categories) label_w = std::max(label_w, Canvas::text_width(cat, 1.5));
  const double left = ox + (p.kind == Panel::HBars ? std::min(w / 2, label_w + 20) : 100);
  const double right = ox + w - (p.kind == Panel::HBars ? 45 : 30), top = oy + 78, bottom = oy + h - 70;
  // Value range over every series.
  double vmin = 1e300, vmax = -1e300, xmin = 1e300, xmax = -1e300;
  for (const auto& s : p.series) {
    for (double v : s.y) if (std::isfinite(v) && (!p.log_value || p.kind != Panel::HBars || v > 0)) vmin = std::min(vmin, v), vmax = std::max(vmax, v);
    for (double v : s.x) xmin = std::min(xmin, v), xmax = std::max(xmax, v);
  }
  if (vmin > vmax) vmin = 0, vmax = 1;
  c.line(left, top, left, bottom, kBlack, 2);
  c.line(left, bottom, right, bottom, kBlack, 2);
  if (p.kind == Panel::HBars) {
    // Value axis along x, log10 decades or linear from 0.
    double lo = 0, hi = vmax;
    std::vector<double> ticks;
    if (p.log_value) {
      lo = std::floor(std::log10(vmin));
      hi = std::ceil(std::log10(vmax));
      if (hi <= lo) hi = lo + 1;
      for (double d = lo; d <= hi; ++d) ticks.push_back(d);
    } else {
      ticks = nice_ticks(0, hi);
    }
    auto X = [&](double v) {
      const double t = p.log_value ? std::log10(std::max(v, 1e-300)) : v;
      return left + (t - lo) / (hi - lo) * (right - left);
    };
    for (double t : ticks) {
      const double x = p.log_value ? left + (t - lo) / (hi - lo) * (right - left) : X(t);
      c.line(x, top, x, bottom, kGrid);
      c.line(x, bottom, x, bottom + 6, kBlack, 2);
      const std::string s = num(p.log_value ? std::pow(10, t) : t);
      c.text(x - Canvas::text_width(s, kScale) / 2, bottom + 12, s, kScale);
    }
    const size_t nc = p.categories.size(), ns = p.series.size();
    const double band = (bottom - top) / double(std::max<size_t>(nc, 1)), bar = band * 0.8 / double(ns);
    for (size_t i = 0; i < nc; ++i) {
      const double y0 = top + band * double(i) + band * 0.1;
      c.text(left - 8 - Canvas::text_width(p.categories[i], 1.5), y0 + band * 0.4 - 5, p.categories[i], 1.5);
      for (size_t k = 0; k < ns; ++k) {
        const double v = i < p.series[k].y.size() ? p.series[k].y[i] : 0;
        if (!(v > 0)) continue;
        c.fill(left + 1, y0 + bar * double(k), std::max(left + 2, X(v)), y0 + bar * double(k + 1) - 1, kPalette[k % 6]);
      }
    }
    const double xw = Canvas::text_width(p.xlabel, kScale);
    c.text(left + (right - left - xw) / 2, bottom + 40, p.xlabel, kScale);
    draw_legend(c, p, right, top - 30);
    return;
  }
  // Vertical value axis: linear from 0 with round ticks.
  double hi = vmax * 1.05;
  const auto ticks = nice_ticks(std::min(0.0, vmin), hi);
  const double lo = ticks.front();
  auto Y = [&](double v) { return bottom - (v - lo) / (hi - lo) * (bottom - top); };
  // Every tick label with the decimals its step needs (0.5 -> 1, 0.25 -> 2), so they line up.
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  const int decimals = step >= 1 ? 0 : std::min(6, int(std::ceil(-std::log10(step) - 1e-9)) + (step * std::pow(10, std::ceil(-std::log10(step) - 1e-9)) < 0.99 ? 1 : 0));
  for (double t : ticks) {
    c.line(left, Y(t), right, Y(t), kGrid);
    c.line(left - 6, Y(t), left, Y(t), kBlack, 2);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, t);
    const std::string s = std::abs(t) >= 1e6 ? num(t) : buf;
    c.text(left - 10 - Canvas::text_width(s, kScale), Y(t) - kCharH / 2, s, kScale);
  }
  c.line(left, top, left, bottom, kBlack, 2);
  c.line(left, bottom, right, bottom, kBlack, 2);
  c.text(ox + 8, top - 30, p.ylabel, kScale);
  const double xw = Canvas::text_width(p.xlabel, kScale);
  c.text(left + (right - left - xw) / 2, bottom + 40, p.xlabel, kScale);
  if (p.kind == Panel::Bars) {
    const size_t nc = p.categories.size(), ns = p.series.size();
    const double band = (right - left) / double(std::max<size_t>(nc, 1)), bar = band * 0.8 / double(ns);
    for (size_t i = 0; i < nc; ++i) {
      const double x0 = left + band * double(i) + band * 0.1;
      const std::string& label = p.categories[i];
      c.text(x0 + band * 0.4 - Canvas::text_width(label, kScale) / 2, bottom + 12, label, kScale);
      for (size_t k = 0; k < ns; ++k) {
        const double v = i < p.series[k].y.size() ? p.series[k].y[i] : 0;
        if (std::isfinite(v)) c.fill(x0 + bar * double(k), Y(v), x0 + bar * double(k + 1) - 1, Y(0), kPalette[k % 6]);
      }
    }
  } else {
    const bool lg = p.log_value && xmin > 0;
    auto T = [&](double x) { return lg ? std::log2(x) : x; };
    double x_lo = T(xmin), x_hi = T(xmax);
    std::vector<double> xt;
    if (p.ticks_at_data || lg) {
      for (double v : p.series.front().x) xt.push_back(v);
    } else {
      x_lo = std::min(0.0, xmin);
      xt = nice_ticks(x_lo, x_hi);
    }
    if (x_hi <= x_lo) x_hi = x_lo + 1;
    const double pad = (p.ticks_at_data || lg) ? 0.04 * (x_hi - x_lo) : 0;
    auto X = [&](double x) { return left + (T(x) - x_lo + pad) / (x_hi - x_lo + 2 * pad) * (right - left); };
    for (double t : xt) {
      c.line(X(t), bottom, X(t), bottom + 6, kBlack, 2);
      const std::string s = num(t);
      c.text(X(t) - Canvas::text_width(s, kScale) / 2, bottom + 12, s, kScale);
    }
    for (size_t k = 0; k < p.series.size(); ++k) {
      const auto& s = p.series[k];
      const Rgb col = kPalette[k % 6];
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        // The first series is drawn widest so a series lying on top of it still shows both.
        if (i > 0) c.line(X(s.x[i - 1]), Y(s.y[i - 1]), X(s.x[i]), Y(s.y[i]), col, k == 0 ? 6 : 3);
        c.fill(X(s.x[i]) - 4, Y(s.y[i]) - 4, X(s.x[i]) + 4, Y(s.y[i]) + 4, col);
      }
    }
  }
  draw_legend(c, p, right, top - 30);
}

double num_at(const nlohmann::json& o, const char* key) {
  if (!o.contains(key) || !o[key].is_number()) throw std::runtime_error(std::string("missing number \"") + key + "\"");
  return o[key].get<double>();
}

const nlohmann::json& points_of(const nlohmann::json& j) {
  if (!j.contains("points") || !j["points"].is_array() || j["points"].empty()) throw std::runtime_error("no \"points\" array");
  return j["points"];
}

// One line series per (name, y key) over the objects of `arr`, x from `xkey`.
std::vector<Series> series_of(const nlohmann::json& arr, const char* xkey,
                              std::initializer_list<std::pair<const char*, const char*>> ys) {
  std::vector<Series> out;
  for (const auto& [name, key] : ys) {
    Series s{name, {}, {}};
    for (const auto& p : arr) {
      s.x.push_back(num_at(p, xkey));
      s.y.push_back(num_at(p, key));
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string subtitle(const nlohmann::json& j) {
  std::string s;
  if (j.contains("backend") && j["backend"].is_string()) s = j["backend"].get<std::string>();
  if (j.contains("model") && j["model"].is_string()) {
    const std::string m = j["model"].get<std::string>();
    s += ", " + m.substr(m.find_last_of('/') == std::string::npos ? 0 : m.find_last_of('/') + 1);
  }
  return s.empty() ? s : " (" + s + ")";
}

std::vector<Panel> panels_for(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("workload") || !j["workload"].is_string()) throw std::runtime_error("not a bench result: no \"workload\" field");
  const std::string w = j["workload"].get<std::string>();
  std::vector<Panel> out;
  if (w == "batch") {
    Panel a, b;
    a.title = "Batched decode throughput" + subtitle(j);
    a.xlabel = "concurrent streams";
    a.ylabel = "generated tok/s";
    a.log_value = true;
    auto both = series_of(points_of(j), "streams", {{"", "gen_tok_s"}, {"", "speedup_vs_1"}});
    a.series = {both[0]};
    b = a;
    b.title = "Speedup vs 1 stream";
    b.ylabel = "x";
    b.series = {both[1]};
    out = {a, b};
  } else if (w == "spec") {
    Panel a;
    a.kind = Panel::Bars;
    a.title = "Speculative decoding speedup vs k" + subtitle(j);
    a.xlabel = "draft length k";
    a.ylabel = "speedup vs no speculation";
    Series s{"", {}, {}};
    for (const auto& p : points_of(j)) {
      std::string k = p.contains("k") && p["k"].is_string() ? p["k"].get<std::string>() : "?";
      if (k.rfind("k=", 0) == 0) k = k.substr(2);
      a.categories.push_back(k);
      s.y.push_back(num_at(p, "speedup"));
    }
    a.series = {s};
    out = {a};
  } else if (w == "mixed") {
    Panel a, b;
    a.title = "Latency vs arrival rate" + subtitle(j);
    a.xlabel = "offered rate (requests/s)";
    a.ylabel = "ms";
    a.ticks_at_data = true;
    Series t50{"TTFT p50", {}, {}}, t99{"TTFT p99", {}, {}}, i99{"ITL p99", {}, {}};
    Series thr{"completed req/s", {}, {}}, good{"goodput req/s (met SLO)", {}, {}};
    for (const auto& p : points_of(j)) {
      const double r = num_at(p, "rate");
      t50.x.push_back(r), t99.x.push_back(r), i99.x.push_back(r), thr.x.push_back(r), good.x.push_back(r);
      t50.y.push_back(num_at(p, "ttft_p50_ms"));
      t99.y.push_back(num_at(p, "ttft_p99_ms"));
      i99.y.push_back(num_at(p, "itl_p99_ms"));
      thr.y.push_back(num_at(p, "throughput_req_s"));
      good.y.push_back(num_at(p, "goodput_req_s"));
    }
    a.series = {t50, t99, i99};
    b.title = "Throughput and goodput vs arrival rate";
    b.xlabel = a.xlabel;
    b.ylabel = "requests/s";
    b.ticks_at_data = true;
    b.series = {thr, good};
    out = {a, b};
  } else if (w == "overload") {
    // The recovery chart: per window of arrivals after the burst, TTFT p99 against the SLO, and
    // what was refused.
    if (!j.contains("windows") || !j["windows"].is_array() || j["windows"].empty()) throw std::runtime_error("no \"windows\" array");
    Panel a, b;
    a.title = "Recovery after the burst: TTFT p99 per window of arrivals" + subtitle(j);
    a.xlabel = "seconds after the burst ended (window start)";
    a.ylabel = "ms";
    Series p99{"TTFT p99", {}, {}}, slo{"SLO", {}, {}}, refused{"refused (queue full)", {}, {}}, done{"completed", {}, {}};
    const double limit = j.contains("slo") ? num_at(j["slo"], "ttft_ms") : 0;
    for (const auto& win : j["windows"]) {
      const double t = num_at(win, "start_s");
      p99.x.push_back(t), slo.x.push_back(t), refused.x.push_back(t), done.x.push_back(t);
      p99.y.push_back(num_at(win, "ttft_p99_ms"));
      slo.y.push_back(limit);
      refused.y.push_back(num_at(win, "refused"));
      done.y.push_back(num_at(win, "completed"));
    }
    a.series = {p99, slo};
    b.title = "Requests per window after the burst";
    b.xlabel = a.xlabel;
    b.ylabel = "requests";
    b.series = {done, refused};
    out = {a, b};
  } else if (w == "ops") {
    if (!j.contains("backends") || !j["backends"].is_array() || j["backends"].empty()) throw std::runtime_error("no \"backends\" array");
    Panel a;
    a.kind = Panel::HBars;
    a.log_value = true;
    a.title = "Per-op time (median, log scale)";
    a.xlabel = "ms per call";
    for (const auto& b : j["backends"]) {
      Series s{b.value("backend", std::string("?")), {}, std::vector<double>(a.categories.size(), 0)};
      if (!b.contains("ops") || !b["ops"].is_array()) throw std::runtime_error("backend entry without \"ops\"");
      for (const auto& o : b["ops"]) {
        const std::string label = o.value("op", std::string("?")) + " " + o.value("dtype", std::string("")) + " " + o.value("shape", std::string(""));
        const auto it = std::find(a.categories.begin(), a.categories.end(), label);
        const size_t idx = size_t(it - a.categories.begin());
        if (it == a.categories.end()) {
          a.categories.push_back(label);
          for (auto& other : a.series) other.y.push_back(0);
          s.y.push_back(0);
        }
        s.y[idx] = o.value("status", std::string()) == "ok" ? num_at(o, "median_ms") : 0;
      }
      a.series.push_back(s);
    }
    for (auto& s : a.series) s.y.resize(a.categories.size(), 0);
    out = {a};
  } else if (w == "prefix" && j.contains("turns")) {
    Panel a;
    a.title = "Multi-turn chat: TTFT per turn" + subtitle(j);
    a.xlabel = "turn";
    a.ylabel = "TTFT ms";
    a.ticks_at_data = true;
    if (!j["turns"].is_array() || j["turns"].empty()) throw std::runtime_error("no \"turns\" array");
    a.series = series_of(j["turns"], "turn", {{"prefix cache on", "ttft_on_ms"}, {"prefix cache off", "ttft_off_ms"}});
    out = {a};
  } else if (w == "prefix") {
    Panel a;
    a.title = "TTFT vs cached fraction of the prompt" + subtitle(j);
    a.xlabel = "fraction of the prompt shared with an earlier request";
    a.ylabel = "TTFT ms";
    a.ticks_at_data = true;
    a.series = series_of(points_of(j), "cached_fraction",
                         {{"cold (nothing cached)", "cold_ttft_ms"}, {"warm (shared prefix cached)", "warm_ttft_ms"}});
    out = {a};
  } else {
    throw std::runtime_error("no chart for workload '" + w + "' (plottable: batch, spec, mixed, overload, ops, prefix)");
  }
  return out;
}

}  // namespace

bool plottable_workload(const std::string& w) {
  return w == "batch" || w == "spec" || w == "mixed" || w == "overload" || w == "ops" || w == "prefix";
}

Status plot_result(const nlohmann::json& j, const std::string& png_path, int width) {
  std::vector<Panel> panels;
  try {
    panels = panels_for(j);
  } catch (const std::exception& e) {
    return make_error(e.what());
  }
  std::vector<int> heights;
  int total = 0;
  for (const auto& p : panels) {
    const int h = p.kind == Panel::HBars ? 140 + 24 * int(p.categories.size()) : 440;
    heights.push_back(h);
    total += h;
  }
  Canvas c(width, total);
  int y = 0;
  for (size_t i = 0; i < panels.size(); ++i) {
    draw_panel(c, panels[i], 0, y, width, heights[i]);
    y += heights[i];
  }
  if (!c.write_png(png_path)) return make_error("cannot write '" + png_path + "'");
  return {};
}

}  // namespace pagoda::cli
