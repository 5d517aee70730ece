#include "apps/server/sse.h"

namespace pagoda::server {

std::string dump_json(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

std::string sse_data(const nlohmann::json& j) { return sse_data_raw(dump_json(j)); }

std::string sse_data_raw(std::string_view payload) {
  std::string s;
  s.reserve(payload.size() + 8);
  s += "data: ";
  s += payload;  // compact JSON has no newlines, so one data line carries it
  s += "\n\n";
  return s;
}

// Lines end in \n, \r\n or \r; an empty line ends an event; several data lines join with \n;
// comments (leading ':') and other fields are skipped (per the WHATWG event-stream grammar).
std::vector<std::string> SseParser::feed(std::string_view bytes) {
  buf_ += bytes;
  std::vector<std::string> events;
  size_t start = 0;
  while (true) {
    const size_t eol = buf_.find_first_of("\r\n", start);
    if (eol == std::string::npos) break;
    if (buf_[eol] == '\r' && eol + 1 == buf_.size()) break;  // a \r\n may be split across reads
    const std::string_view line(buf_.data() + start, eol - start);
    start = eol + ((buf_[eol] == '\r' && buf_[eol + 1] == '\n') ? 2 : 1);
    if (line.empty()) {
      if (has_data_) events.push_back(data_);
      data_.clear();
      has_data_ = false;
      continue;
    }
    if (line.rfind("data", 0) != 0 || (line.size() > 4 && line[4] != ':')) continue;
    std::string_view v = line.substr(line.size() > 4 ? 5 : 4);
    if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    if (has_data_) data_ += '\n';
    data_ += v;
    has_data_ = true;
  }
  buf_.erase(0, start);
  return events;
}

}  // namespace pagoda::server
