// The HTTP transport: one thread per connection (bounded), Beast's incremental request parser fed
// from our own non-blocking reads, and responses written by hand. Owning the reads is what gives
// every request a total deadline for its head and its body, a look at the head before any body
// byte is taken off the socket, and leftover bytes kept for the next pipelined request. The only
// translation unit that includes Beast, so its templates compile once.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <mutex>
#include <system_error>
#include <thread>

#include <fmt/core.h>

#include "apps/server/http.h"

namespace pagoda::server::http {
namespace {

namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;
using Parser = bhttp::request_parser<bhttp::string_body>;

enum class Io { Ok, Eof, Timeout, Error };

Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

int ms_until(Clock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms <= 0 ? 0 : int(std::min<int64_t>(ms, 1 << 30));
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(uint8_t(a[i])) != std::tolower(uint8_t(b[i]))) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Appends what the socket has to `buf`, waiting until `deadline` for at least one byte.
Io read_some(int fd, std::string& buf, Clock::time_point deadline) {
  char tmp[16384];
  while (true) {
    const ssize_t n = ::recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
    if (n > 0) {
      buf.append(tmp, size_t(n));
      return Io::Ok;
    }
    if (n == 0) return Io::Eof;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Io::Error;
    const int ms = ms_until(deadline);
    if (ms == 0) return Io::Timeout;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) < 0 && errno != EINTR) return Io::Error;
  }
}

// Sends everything; fails when the peer is gone or no byte could be sent for `timeout_s`.
bool send_all(int fd, const char* d, size_t n, double timeout_s) {
  auto deadline = after(timeout_s);
  while (n > 0) {
    const ssize_t w = ::send(fd, d, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
      d += w;
      n -= size_t(w);
      deadline = after(timeout_s);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    const int ms = ms_until(deadline);
    if (ms == 0) return false;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, ms) < 0 && errno != EINTR) return false;
  }
  return true;
}

bool send_all(int fd, std::string_view s, double timeout_s) { return send_all(fd, s.data(), s.size(), timeout_s); }

// The client closed (or reset) its side. Bytes waiting to be read (a pipelined request) are not
// a hang-up; they stay in the socket for the next request.
bool peer_closed(int fd) {
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

// After an answer that leaves a body unread: stop sending, then read and drop what the client
// is still sending, so a client that writes its whole body before reading sees our response
// rather than a reset. Bounded in bytes (4 MiB) and time (1 s), never buffered (RSS stays flat);
// a client that keeps sending past that is cut off.
void linger_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto deadline = after(1.0);
  size_t drained = 0;
  std::string sink;
  while (drained < (4u << 20)) {
    sink.clear();
    if (read_some(fd, sink, deadline) != Io::Ok) break;
    drained += sink.size();
  }
}

std::string reason(int status) {
  const auto r = bhttp::obsolete_reason(bhttp::int_to_status(unsigned(status)));
  return r.empty() ? std::string("Unknown") : std::string(r.data(), r.size());
}

// Status line and headers. A response we generate never repeats a framing header a handler set.
std::string head_of(const Response& r, bool keep_alive, std::string_view framing) {
  std::string h = fmt::format("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
  if (!r.content_type.empty()) h += "Content-Type: " + r.content_type + "\r\n";
  for (const auto& [k, v] : r.headers) {
    if (iequals(k, "Content-Length") || iequals(k, "Transfer-Encoding") || iequals(k, "Connection")) continue;
    h += k + ": " + v + "\r\n";
  }
  h += framing;
  h += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  return h;
}

// Writes a streamed body as the provider produces it: chunked on HTTP/1.1, raw until close on 1.0.
class SocketSink : public DataSink {
 public:
  SocketSink(int fd, bool chunked, double timeout_s) : fd_(fd), chunked_(chunked), timeout_s_(timeout_s) {}
  bool write(const char* data, size_t n) override {
    if (failed_ || done_) return false;
    if (n == 0) return true;  // an empty chunk would end the body
    bool ok = true;
    if (chunked_) ok = send_all(fd_, fmt::format("{:x}\r\n", n), timeout_s_);
    ok = ok && send_all(fd_, data, n, timeout_s_);
    if (chunked_) ok = ok && send_all(fd_, "\r\n", timeout_s_);
    failed_ = !ok;
    written_ += n;
    return ok;
  }
  void done() override {
    if (done_ || failed_) return;
    done_ = true;
    if (chunked_ && !send_all(fd_, "0\r\n\r\n", timeout_s_)) failed_ = true;
  }
  bool finished() const { return done_ || failed_; }
  bool ok() const { return done_ && !failed_; }
  size_t written() const { return written_; }

 private:
  int fd_;
  bool chunked_;
  double timeout_s_;
  bool done_ = false, failed_ = false;
  size_t written_ = 0;
};

}  // namespace

struct Transport::Impl {
  struct Conn {
    int fd = -1;
    std::thread thread;
  };

  explicit Impl(TransportConfig c) : cfg(std::move(c)) {}

  TransportConfig cfg;
  std::map<std::string, std::map<std::string, Handler>> routes;  // path -> method -> handler
  HeaderCheck check;
  int listen_fd = -1;
  std::thread acceptor;
  std::atomic<bool> stopping{false};
  bool started = false;

  mutable std::mutex mu;  // conns, finished
  std::map<uint64_t, Conn> conns;
  std::vector<uint64_t> finished;
  uint64_t next_id = 0;
  std::vector<std::pair<int, Clock::time_point>> lingering;  // refused connections closing (acceptor only)

  Response error(int status, const std::string& message) const {
    Response r;
    r.status = status;
    r.set_content(cfg.error_body ? cfg.error_body(status, message) : message + "\n",
                  cfg.error_body ? "application/json" : "text/plain");
    return r;
  }

  void accept_loop();
  void refuse_full(int fd);
  void tick_lingering(bool all);
  void reap();
  void serve(int fd, Clock::time_point accepted);
  bool one_request(int fd, std::string& buf, Clock::time_point head_deadline);
  bool read_head(int fd, std::string& buf, Parser& p, Clock::time_point deadline);
  bool read_body(int fd, std::string& buf, Parser& p);
  Request request_of(const Parser& p, int fd, const std::string& buf) const;
  std::optional<Response> refuse_before_body(const Request& req, const Parser& p, const Handler*& h) const;
  bool send(int fd, const Request& req, Response& res, bool keep_alive);
  bool send_error_and_close(int fd, int status, const std::string& message);
};

Transport::Transport(TransportConfig cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {}

Transport::~Transport() { stop(); }

void Transport::route(const std::string& method, const std::string& path, Handler h) {
  impl_->routes[path][method] = std::move(h);
}

void Transport::set_header_check(HeaderCheck c) { impl_->check = std::move(c); }

Result<int> Transport::bind(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  const std::string service = std::to_string(port);
  if (::getaddrinfo(host.c_str(), service.c_str(), &hints, &res) != 0 || !res)
    return make_error(fmt::format("cannot resolve '{}' to listen on", host));
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    // SO_REUSEADDR lets a restarted server rebind at once; never SO_REUSEPORT, which would let a
    // second server bind the same port and silently split the traffic.
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) return make_error(fmt::format("cannot listen on {}:{} (port in use, or not a local address?)", host, port));
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  const int bound = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                             : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  impl_->listen_fd = fd;
  return bound;
}

void Transport::start() {
  Impl& d = *impl_;
  if (d.started || d.listen_fd < 0) return;
  d.started = true;
  d.acceptor = std::thread([&d] { d.accept_loop(); });
}

void Transport::stop() {
  Impl& d = *impl_;
  d.stopping = true;
  if (d.acceptor.joinable()) d.acceptor.join();
  if (d.listen_fd >= 0) ::close(d.listen_fd);
  d.listen_fd = -1;
  d.tick_lingering(true);
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lk(d.mu);
    for (auto& [id, c] : d.conns) {
      if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);  // wakes every poll, recv and send at once
      if (c.thread.joinable()) threads.push_back(std::move(c.thread));
    }
  }
  for (auto& t : threads) t.join();
  std::lock_guard<std::mutex> lk(d.mu);
  d.conns.clear();
  d.finished.clear();
}

size_t Transport::connections() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  size_t n = 0;
  for (const auto& [id, c] : impl_->conns) n += c.fd >= 0 ? 1 : 0;
  return n;
}

void Transport::Impl::accept_loop() {
  while (!stopping) {
    pollfd p{listen_fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 100);
    reap();
    tick_lingering(false);
    if (r <= 0 || stopping) continue;
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));  // SSE writes are small
    const auto accepted = Clock::now();
    std::lock_guard<std::mutex> lk(mu);
    size_t open = 0;
    for (const auto& [id, c] : conns) open += c.fd >= 0 ? 1 : 0;
    if (open >= cfg.max_connections) {
      refuse_full(fd);
      continue;
    }
    const uint64_t id = ++next_id;
    try {
      std::thread t([this, id, fd, accepted] {
        serve(fd, accepted);
        std::lock_guard<std::mutex> lk2(mu);
        ::close(fd);
        conns[id].fd = -1;
        finished.push_back(id);
      });
      conns[id] = Conn{fd, std::move(t)};  // the thread waits on `mu` before it can finish
    } catch (const std::system_error&) {
      refuse_full(fd);  // no thread to be had (process limits): same answer as a full server
    }
  }
}

// A full server answers at once instead of leaving the client in the accept queue.
void Transport::Impl::refuse_full(int fd) {
  Response r = error(503, fmt::format("the server has too many open connections (limit {}); retry shortly", cfg.max_connections));
  r.set_header("Retry-After", "1");
  const std::string out = head_of(r, false, fmt::format("Content-Length: {}\r\n", r.body.size())) + r.body;
  (void)::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (cfg.on_response) cfg.on_response(503);
  ::shutdown(fd, SHUT_WR);
  if (lingering.size() >= 256) {
    ::close(fd);
    return;
  }
  lingering.emplace_back(fd, after(1.0));
}

void Transport::Impl::tick_lingering(bool all) {
  char tmp[4096];
  for (size_t i = 0; i < lingering.size();) {
    auto& [fd, deadline] = lingering[i];
    ssize_t n = 0;
    while ((n = ::recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT)) > 0) {
    }
    if (all || n == 0 || Clock::now() > deadline) {
      ::close(fd);
      lingering[i] = lingering.back();
      lingering.pop_back();
    } else {
      ++i;
    }
  }
}

void Transport::Impl::reap() {
  std::vector<std::thread> done;
  {
    std::lock_guard<std::mutex> lk(mu);
    for (uint64_t id : finished) {
      auto it = conns.find(id);
      if (it == conns.end()) continue;
      if (it->second.thread.joinable()) done.push_back(std::move(it->second.thread));
      conns.erase(it);
    }
    finished.clear();
  }
  for (auto& t : done) t.join();
}

void Transport::Impl::serve(int fd, Clock::time_point accepted) {
  std::string buf;  // bytes read but not yet parsed: the start of a pipelined request
  // The first request's head must arrive within the header deadline of the connection opening,
  // so a connection that never sends a byte is closed like a slow one.
  Clock::time_point head_deadline = accepted + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(cfg.header_timeout_s));
  while (!stopping) {
    if (buf.empty() && read_some(fd, buf, head_deadline) != Io::Ok) return;  // idle timeout or hang-up
    if (!one_request(fd, buf, head_deadline)) return;
    // The next head is due header_timeout_s after this response; an idle kept-alive connection
    // must start it within keep_alive_s.
    head_deadline = after(cfg.header_timeout_s);
    if (buf.empty() && read_some(fd, buf, std::min(head_deadline, after(cfg.keep_alive_s))) != Io::Ok) return;
  }
}

bool Transport::Impl::send_error_and_close(int fd, int status, const std::string& message) {
  Response r = error(status, message);
  Request none;
  send(fd, none, r, false);
  return false;
}

// Feeds the parser until the head is complete. False (after answering when there is an answer
// to give) ends the connection.
bool Transport::Impl::read_head(int fd, std::string& buf, Parser& p, Clock::time_point deadline) {
  while (!p.is_header_done()) {
    boost::system::error_code ec;
    if (!buf.empty()) {
      const size_t used = p.put(boost::asio::buffer(buf.data(), buf.size()), ec);
      buf.erase(0, used);
      if (!ec) continue;
      if (ec == bhttp::error::header_limit)
        return send_error_and_close(fd, 431, fmt::format("request headers exceed {} bytes", cfg.max_header));
      if (ec != bhttp::error::need_more) return send_error_and_close(fd, 400, "malformed HTTP request: " + ec.message());
    }
    const Io io = read_some(fd, buf, deadline);
    if (io == Io::Timeout)
      return send_error_and_close(fd, 408, fmt::format("request headers not complete within {:g} s", cfg.header_timeout_s));
    if (io != Io::Ok) return false;
  }
  return true;
}

bool Transport::Impl::read_body(int fd, std::string& buf, Parser& p) {
  p.eager(true);
  const auto deadline = after(cfg.body_timeout_s);
  while (!p.is_done()) {
    boost::system::error_code ec;
    if (!buf.empty()) {
      const size_t used = p.put(boost::asio::buffer(buf.data(), buf.size()), ec);
      buf.erase(0, used);
      if (!ec) continue;
      if (ec == bhttp::error::body_limit) {
        send_error_and_close(fd, 413, fmt::format("request body exceeds the limit of {} bytes", cfg.max_body));
        linger_close(fd);
        return false;
      }
      if (ec != bhttp::error::need_more) return send_error_and_close(fd, 400, "malformed HTTP body: " + ec.message());
    }
    const Io io = read_some(fd, buf, deadline);
    if (io == Io::Timeout)
      return send_error_and_close(fd, 408, fmt::format("request body not complete within {:g} s", cfg.body_timeout_s));
    if (io != Io::Ok) return false;
  }
  return true;
}

Request Transport::Impl::request_of(const Parser& p, int fd, const std::string& buf) const {
  const auto& m = p.get();
  Request r;
  r.method = std::string(m.method_string());
  r.target = std::string(m.target());
  const size_t q = r.target.find('?');
  r.path = url_decode(std::string_view(r.target).substr(0, q), false);
  if (q != std::string::npos) r.params = parse_query(std::string_view(r.target).substr(q + 1));
  r.version = int(m.version());
  for (const auto& f : m) r.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  // Bytes already buffered belong to a pipelined request: the client is still there.
  r.client_gone = [fd, &buf] { return buf.empty() && peer_closed(fd); };
  return r;
}

// Everything decided from the head alone, before a body byte is read: framing and encoding we do
// not accept, unknown routes, declared sizes over the limit, and the server's own check
// (authentication, shutdown).
std::optional<Response> Transport::Impl::refuse_before_body(const Request& req, const Parser& p, const Handler*& h) const {
  const std::string ce(trim(req.get_header_value("Content-Encoding")));
  if (!ce.empty() && !iequals(ce, "identity"))
    return error(415, fmt::format("Content-Encoding '{}' is not accepted; send the body uncompressed", ce));
  const std::string te(trim(req.get_header_value("Transfer-Encoding")));
  if (!te.empty() && !iequals(te, "chunked"))
    return error(501, fmt::format("Transfer-Encoding '{}' is not supported (only chunked)", te));
  auto route = routes.find(req.path);
  if (route == routes.end() || !route->second.count(req.method))
    return error(404, fmt::format("no route for {} {}", req.method, req.path));
  h = &route->second.at(req.method);
  if (auto len = p.content_length(); len && *len > cfg.max_body)
    return error(413, fmt::format("request body exceeds the limit of {} bytes", cfg.max_body));
  if (check) return check(req);
  return std::nullopt;
}

// One request off the connection: head, checks, body, handler, response. False closes it.
bool Transport::Impl::one_request(int fd, std::string& buf, Clock::time_point head_deadline) {
  Parser p;
  p.header_limit(uint32_t(std::min<size_t>(cfg.max_header, UINT32_MAX)));
  // No body limit while the head is parsed: Beast would fail a large Content-Length right there,
  // before refuse_before_body() answers 413 and lets the client finish writing (linger_close).
  // (Not boost::none: Beast 1.74 compares a length against an empty optional as "over".)
  p.body_limit(std::numeric_limits<uint64_t>::max());
  if (!read_head(fd, buf, p, head_deadline)) return false;
  Request req = request_of(p, fd, buf);
  const bool has_body = p.chunked() || (p.content_length() && *p.content_length() > 0);
  const Handler* handler = nullptr;
  if (auto refusal = refuse_before_body(req, p, handler)) {
    // The body was never read, so the connection cannot carry another request.
    send(fd, req, *refusal, !has_body && p.keep_alive() && !stopping);
    if (!has_body) return p.keep_alive() && !stopping;
    linger_close(fd);
    return false;
  }
  if (has_body && iequals(trim(req.get_header_value("Expect")), "100-continue") &&
      !send_all(fd, "HTTP/1.1 100 Continue\r\n\r\n", cfg.write_timeout_s))
    return false;
  p.body_limit(uint64_t(cfg.max_body));  // decoded bytes, counted as they arrive
  if (!read_body(fd, buf, p)) return false;
  req.body = std::move(p.get().body());
  Response res;
  try {
    (*handler)(req, res);
  } catch (const std::exception& e) {
    res = error(500, std::string("internal error: ") + e.what());
  }
  return send(fd, req, res, p.keep_alive() && !stopping) && p.keep_alive() && !stopping;
}

bool Transport::Impl::send(int fd, const Request& req, Response& res, bool keep_alive) {
  if (cfg.on_response) cfg.on_response(res.status);
  if (!res.provider) {
    const std::string out = head_of(res, keep_alive, fmt::format("Content-Length: {}\r\n", res.body.size())) + res.body;
    return send_all(fd, out, cfg.write_timeout_s);
  }
  // HTTP/1.0 has no chunked encoding: the body runs until the connection closes.
  const bool chunked = req.version >= 11;
  SocketSink sink(fd, chunked, cfg.write_timeout_s);
  bool ok = send_all(fd, head_of(res, keep_alive && chunked, chunked ? "Transfer-Encoding: chunked\r\n" : ""), cfg.write_timeout_s);
  try {
    while (ok && !sink.finished() && !stopping) ok = res.provider(sink.written(), sink);
  } catch (const std::exception&) {
    ok = false;  // the head is out; all we can still do is end the connection
  }
  ok = ok && sink.ok();
  if (res.releaser) res.releaser(ok);
  return ok && chunked;
}

}  // namespace pagoda::server::http
