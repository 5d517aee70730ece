#include "apps/server/generation.h"

#include <algorithm>

namespace pagoda::server {

TokenCallback RequestChannel::callback_for(const std::shared_ptr<RequestChannel>& ch) {
  return [ch](const TokenEvent& ev) { ch->push(ev); };
}

void RequestChannel::push(const TokenEvent& ev) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    events_.push_back(ev);
  }
  cv_.notify_one();
}

bool RequestChannel::take(std::vector<TokenEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait_for(lk, timeout, [&] { return !events_.empty() || aborted_; });
  if (events_.empty()) return false;
  for (auto& e : events_) out.push_back(std::move(e));
  events_.clear();
  return true;
}

void RequestChannel::abort() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    aborted_ = true;
  }
  cv_.notify_all();
}

bool RequestChannel::aborted() const {
  std::lock_guard<std::mutex> lk(mu_);
  return aborted_;
}

std::string StopMatcher::push(std::string_view piece) {
  if (stopped_) return "";
  if (stops_.empty()) return std::string(piece);
  held_ += piece;
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    std::string out = held_.substr(0, first);
    held_.clear();
    stopped_ = true;
    return out;
  }
  // Keep the longest tail that is a proper prefix of some stop sequence. A stop sequence is valid
  // UTF-8 starting on a character boundary, so the cut never splits a character.
  size_t keep = 0;
  for (const auto& s : stops_)
    for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len)
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  return out;
}

}  // namespace pagoda::server
