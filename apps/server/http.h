// The server's own small HTTP/1.1 interface: requests, responses, streamed bodies and a transport
// that owns the sockets. Route handlers see only these types. The transport (http_transport.cpp)
// parses with Boost.Beast's incremental parser but does its own socket I/O, so it controls what
// httplib could not: a total deadline on headers and on bodies, a decision from the headers alone
// (authentication, size, encoding) before any body byte is read, decoded-size limits on chunked
// bodies while they arrive, pipelined requests answered in order, a bounded connection count,
// noticing a client that hangs up while its handler waits, and a hard stop.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/util/result.h"

namespace pagoda::server::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;  // as sent ("GET", "POST", ...)
  std::string target;  // path and query as sent
  std::string path;    // percent-decoded path without the query
  std::multimap<std::string, std::string> params;  // decoded query parameters
  Headers headers;
  std::string body;    // decoded (chunked framing removed); empty until the body stage
  int version = 11;    // 10 or 11
  // True once the client has closed its side of the connection. Handlers that wait a long time
  // without writing (a non-streaming generation) poll it to cancel work nobody will receive.
  std::function<bool()> client_gone;

  std::string get_header_value(std::string_view name) const;  // "" when absent; names are case-insensitive
  bool has_header(std::string_view name) const;
  std::string get_param_value(std::string_view name) const;
  bool has_param(std::string_view name) const;
};

// Where a streamed response's provider writes. write() sends at once (one chunk); false means
// the client is gone or too slow (the write deadline passed) and the stream should end.
class DataSink {
 public:
  virtual ~DataSink() = default;
  virtual bool write(const char* data, size_t n) = 0;
  virtual void done() = 0;  // the body is complete
};

// Called until it returns false (abandon the response) or calls sink.done().
using ContentProvider = std::function<bool(size_t offset, DataSink& sink)>;
// Runs once however a streamed response ended; `success` is false when it was cut short.
using ContentProviderReleaser = std::function<void(bool success)>;

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
  std::string content_type;
  ContentProvider provider;          // set: the body is streamed (chunked on HTTP/1.1)
  ContentProviderReleaser releaser;

  void set_header(std::string name, std::string value) { headers.emplace_back(std::move(name), std::move(value)); }
  std::string get_header_value(std::string_view name) const;
  void set_content(std::string b, std::string type) {
    body = std::move(b);
    content_type = std::move(type);
  }
  void set_chunked_content_provider(std::string type, ContentProvider p, ContentProviderReleaser r = {}) {
    content_type = std::move(type);
    provider = std::move(p);
    releaser = std::move(r);
  }
};

using Handler = std::function<void(const Request&, Response&)>;
// Sees a request with its headers only (body empty). A response refuses the request before its
// body is read; nullopt lets it through.
using HeaderCheck = std::function<std::optional<Response>(const Request&)>;

struct TransportConfig {
  size_t max_body = 1 << 20;         // decoded body bytes; more: 413, counted while reading
  size_t max_header = 16 << 10;      // request line plus headers; more: 431
  size_t max_connections = 64;       // open connections; the next is answered 503 and closed
  double header_timeout_s = 10;      // whole request head, from its first byte (slowloris bound)
  double body_timeout_s = 30;        // whole body, after the head
  double keep_alive_s = 2;           // idle wait for the next request on a kept connection
  double write_timeout_s = 10;       // one write making no progress for this long ends the connection
  // The body of errors the transport itself answers (404, 408, 413, 415, 431, 503, ...).
  std::function<std::string(int status, const std::string& message)> error_body;
  std::function<void(int status)> on_response;  // every response sent, for metrics
};

// Minimal percent-decoding for paths and query strings ('+' is a space only in queries).
std::string url_decode(std::string_view s, bool plus_is_space);
std::multimap<std::string, std::string> parse_query(std::string_view q);

class Transport {
 public:
  explicit Transport(TransportConfig cfg);
  ~Transport();  // stop()
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Exact path match; an unknown path or method gets 404 from the transport.
  void route(const std::string& method, const std::string& path, Handler h);
  void set_header_check(HeaderCheck c);

  // Binds (port 0 picks a free one) and returns the bound port; start() then serves on threads.
  Result<int> bind(const std::string& host, int port);
  void start();
  // Hard stop: closes the listener and every connection (a handler blocked on a socket returns
  // at once), then joins every thread. Handlers must not wait on anything else forever.
  void stop();
  size_t connections() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace pagoda::server::http
