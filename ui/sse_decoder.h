// SseDecoder: incremental parser for text/event-stream bodies. Bytes arrive in arbitrary chunks
// (a snapshot can span many TCP reads); each completed event's data payload comes back whole.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace pagoda::ui {

class SseDecoder {
 public:
  // Returns the data of every event completed by these bytes. Multi-line data is joined with
  // '\n'; comments (": keep-alive") and fields other than data are ignored.
  std::vector<std::string> feed(std::string_view bytes);
  void reset() { line_.clear(); data_.clear(); has_data_ = false; }

 private:
  void take_line(std::string_view line, std::vector<std::string>& out);
  std::string line_;  // bytes of an unfinished line
  std::string data_;  // data of the event being built
  bool has_data_ = false;
};

}  // namespace pagoda::ui
