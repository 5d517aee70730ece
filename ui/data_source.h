// DataSource: where the inspector's snapshots come from (an engine in this process, or a server's
// SSE feed). The UI thread only calls latest() and send(); neither ever waits on the engine.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/telemetry/telemetry.h"

namespace pagoda::ui {

// An intent from the controls panel. Panels emit these as values; the source applies them on its
// own thread, so a click never runs engine code on the UI thread.
struct Command {
  enum class Kind : uint8_t { Pause, Resume, Step, Submit, SpecPolicy, SetRate };
  Kind kind = Kind::Pause;
  int32_t n = 1;          // Step: how many engine steps; SpecPolicy: fixed k
  bool adaptive = false;  // SpecPolicy: let the controller pick k
  double rate = 0;        // SetRate: requests per second
  std::string prompt, tenant;  // Submit
};

// Which commands a source honours (a remote server is read-only).
struct SourceCaps {
  bool pause_step = false, submit = false, spec_policy = false, rate = false;
};

// Settings the controls panel shows that are not part of the engine's Snapshot.
struct SourceControls {
  SourceCaps caps;
  double rate = 0;          // current request rate of the synthetic workload
  bool spec_enabled = false;  // a drafter exists, so the draft-length policy means something
  bool adaptive = false;    // the draft-length policy last applied
  int32_t fixed_k = 0;
  uint64_t submitted = 0;   // requests the workload generator has submitted
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  // The newest snapshot; never null, never blocks on the engine (a pointer copy under a lock).
  virtual std::shared_ptr<const Snapshot> latest() const = 0;
  virtual std::string name() const = 0;    // what is being inspected, for the title bar
  virtual std::string status() const = 0;  // one line: running, paused, connected, last error
  virtual SourceControls controls() const { return {}; }
  virtual void send(Command) {}
  // True once there is something worth capturing (a target step count reached, a first event).
  virtual bool capture_ready() const { return true; }
};

}  // namespace pagoda::ui
