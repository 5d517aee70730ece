// What every server test needs: the real stories260K model loaded once per test binary, and an
// engine plus a server on an ephemeral loopback port, started and torn down in order. Each test
// file keeps its own client helpers (httplib, raw sockets, SSE parsing) on top of this.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "apps/server/server.h"
#include "backends/cpu/cpu_backend.h"
#include "core/engine/engine.h"
#include "core/model/loaded_model.h"

namespace pagoda::testing {

// stories260K on a one-thread CPU backend: the machine's cores are shared by the test runner.
struct StoriesModel {
  CpuBackend be{CpuOptions{.threads = 1}};
  std::unique_ptr<LoadedModel> m;
  StoriesModel() {
    auto r = LoadedModel::load(std::string(PAGODA_STORIES_GGUF), be);
    EXPECT_TRUE(r.ok()) << (r ? "" : r.error());
    if (r) m = std::move(*r);
  }
};

inline StoriesModel& stories_model() {
  static StoriesModel m;
  return m;
}

// An engine on `model` (with an optional draft model) and a server for it on 127.0.0.1, port
// chosen by the kernel. The server answers as model "stories260K" (the tests ask for it by name).
struct ServerUnderTest {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<server::Server> srv;
  int port = 0;
  ServerUnderTest(LoadedModel& model, Backend& be, const EngineConfig& ec, server::ServerConfig sc,
                  LoadedModel* draft = nullptr) {
    auto e = Engine::create(model, be, ec, draft);
    EXPECT_TRUE(e.ok()) << (e ? "" : e.error());
    if (!e) return;
    engine = std::move(*e);
    engine->start();
    sc.model_name = "stories260K";  // what the tests ask for by name
    srv = std::make_unique<server::Server>(*engine, sc);
    auto p = srv->start("127.0.0.1", 0);
    EXPECT_TRUE(p.ok()) << (p ? "" : p.error());
    port = p ? *p : 0;
  }
  ~ServerUnderTest() {
    if (srv) srv->stop(1.0);
    if (engine) engine->stop(false);
  }
  ServerUnderTest(const ServerUnderTest&) = delete;
  ServerUnderTest& operator=(const ServerUnderTest&) = delete;
};

}  // namespace pagoda::testing
