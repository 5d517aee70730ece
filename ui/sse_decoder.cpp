#include "ui/sse_decoder.h"

namespace pagoda::ui {

std::vector<std::string> SseDecoder::feed(std::string_view bytes) {
  std::vector<std::string> out;
  for (char c : bytes) {
    if (c != '\n') {
      line_.push_back(c);
      continue;
    }
    std::string_view line(line_);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF framing
    take_line(line, out);
    line_.clear();
  }
  return out;
}

void SseDecoder::take_line(std::string_view line, std::vector<std::string>& out) {
  if (line.empty()) {  // a blank line dispatches the event
    if (has_data_) out.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field != "data") return;
  if (has_data_) data_.push_back('\n');
  data_.append(value);
  has_data_ = true;
}

}  // namespace pagoda::ui
