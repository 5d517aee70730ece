// RemoteSource: snapshots from a running `pagoda serve`, read from its SSE feed
// (GET /v1/inspect/stream, one `data: <snapshot json>` event per publish) on a reader thread that
// reconnects with backoff. Read-only: the server's engine is not the inspector's to steer.
#pragma once
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "ui/data_source.h"

namespace httplib {
class Client;
}

namespace pagoda::ui {

struct RemoteOptions {
  std::string url;  // http://host:port
  std::string path = "/v1/inspect/stream";
  std::string api_key;      // sent as a Bearer token when set
  double reconnect_s = 1.0;  // first retry delay; doubles up to 8 s
};

class RemoteSource final : public DataSource {
 public:
  explicit RemoteSource(RemoteOptions o);
  ~RemoteSource() override;

  void start();
  void stop();

  std::shared_ptr<const Snapshot> latest() const override;
  std::string name() const override { return opts_.url; }
  std::string status() const override;
  bool capture_ready() const override { return events_.load() > 0; }

  uint64_t events() const { return events_.load(); }  // snapshots parsed so far
  uint64_t errors() const { return errors_.load(); }  // malformed events skipped

 private:
  void loop();
  bool read_stream();  // one connection; true if it ended because of stop()
  void take_event(const std::string& data);
  void set_status(std::string s);

  RemoteOptions opts_;
  mutable std::mutex mu_;  // guards cur_, status_, client_
  std::condition_variable cv_;
  std::shared_ptr<const Snapshot> cur_ = std::make_shared<Snapshot>();
  std::string status_ = "connecting";
  httplib::Client* client_ = nullptr;  // the live connection, so stop() can shut its socket
  std::atomic<uint64_t> events_{0}, errors_{0};
  std::atomic<bool> quit_{false};
  std::thread thread_;
};

}  // namespace pagoda::ui
