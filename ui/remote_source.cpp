#include "ui/remote_source.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/telemetry/snapshot_json.h"
#include "ui/sse_decoder.h"

namespace pagoda::ui {

RemoteSource::RemoteSource(RemoteOptions o) : opts_(std::move(o)) {}

RemoteSource::~RemoteSource() { stop(); }

void RemoteSource::start() {
  if (thread_.joinable()) return;
  quit_ = false;
  thread_ = std::thread([this] { loop(); });
}

void RemoteSource::stop() {
  quit_ = true;
  {
    std::lock_guard<std::mutex> lk(mu_);
    // A blocked read only returns when its socket is shut; the receiver then sees quit_.
    if (client_) client_->stop();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const Snapshot> RemoteSource::latest() const {
  std::lock_guard<std::mutex> lk(mu_);
  return cur_;
}

std::string RemoteSource::status() const {
  std::lock_guard<std::mutex> lk(mu_);
  return status_ + " | " + std::to_string(events_.load()) + " snapshots";
}

void RemoteSource::set_status(std::string s) {
  std::lock_guard<std::mutex> lk(mu_);
  status_ = std::move(s);
}

void RemoteSource::take_event(const std::string& data) {
  if (data == "[DONE]") return;
  auto j = nlohmann::json::parse(data, nullptr, false);
  if (j.is_discarded()) {
    ++errors_;
    return;
  }
  auto s = snapshot_from_json(j);
  if (!s) {
    ++errors_;
    set_status("bad snapshot: " + s.error());
    return;
  }
  auto p = std::make_shared<const Snapshot>(std::move(*s));
  std::lock_guard<std::mutex> lk(mu_);
  cur_ = std::move(p);
  status_ = "connected";
  ++events_;
}

bool RemoteSource::read_stream() {
  httplib::Client cli(opts_.url);
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(10, 0);  // the server sends keep-alives well inside this
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (quit_) return true;
    client_ = &cli;
  }
  httplib::Headers headers = {{"Accept", "text/event-stream"}};
  if (!opts_.api_key.empty()) headers.emplace("Authorization", "Bearer " + opts_.api_key);
  SseDecoder dec;
  int http_status = 0;
  auto res = cli.Get(
      opts_.path, headers,
      [&](const httplib::Response& r) {
        http_status = r.status;
        return r.status == 200;
      },
      [&](const char* data, size_t len) {
        for (const std::string& ev : dec.feed(std::string_view(data, len))) take_event(ev);
        return !quit_.load();
      });
  {
    std::lock_guard<std::mutex> lk(mu_);
    client_ = nullptr;
  }
  if (quit_) return true;
  if (http_status != 0 && http_status != 200)
    set_status("HTTP " + std::to_string(http_status) + " from " + opts_.url + opts_.path);
  else if (!res)
    set_status("disconnected: " + httplib::to_string(res.error()) + "; retrying");
  else
    set_status("stream ended; reconnecting");
  return false;
}

void RemoteSource::loop() {
  double backoff = opts_.reconnect_s;
  while (!quit_) {
    const uint64_t before = events_.load();
    if (read_stream()) break;
    if (events_.load() > before) backoff = opts_.reconnect_s;  // a stream that worked resets the delay
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait_for(lk, std::chrono::duration<double>(backoff), [&] { return quit_.load(); });
    backoff = std::min(backoff * 2, 8.0);
  }
}

}  // namespace pagoda::ui
