// Vulkan backend specifics: device listing and choice, clear errors (bad index, no driver, huge
// allocation, bad shapes), ordering of uploads with queued ops, deferred buffer release,
// validation-clean conformance with and without subgroup ops, and per-op timestamps.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "backends/conformance.h"
#include "backends/cpu/cpu_backend.h"
#include "tests/generate_oracle.h"
#include "core/model/loaded_model.h"
#include "backends/vulkan/device.h"
#include "backends/vulkan/vulkan_backend.h"

using namespace pagoda;

namespace {

// Sets an environment variable for the lifetime of the object, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

BackendPtr make_or_skip_reason(std::string* why) {
  auto be = create_vulkan_backend(-1);
  if (!be) {
    *why = be.error();
    return nullptr;
  }
  return std::move(*be);
}

#define VULKAN_OR_SKIP(var)                          \
  std::string var##_why;                             \
  BackendPtr var = make_or_skip_reason(&var##_why);  \
  if (!var) GTEST_SKIP() << "vulkan: " << var##_why

struct Buf {
  BufferPtr owner;
  Tensor t;
};

Buf make_f32(Backend& be, int64_t rows, int64_t cols, float fill) {
  auto b = be.alloc(size_t(rows * cols) * 4);
  EXPECT_TRUE(b.ok()) << (b.ok() ? "" : b.error());
  Buf out{std::move(*b), {}};
  out.t = Tensor{out.owner.get(), 0, DType::F32, rows, cols};
  std::vector<float> v(size_t(rows * cols), fill);
  be.upload(out.t, v.data(), v.size() * 4);
  return out;
}

std::vector<float> read(Backend& be, const Tensor& t) {
  std::vector<float> v(size_t(t.rows * t.cols));
  be.download(t, v.data(), v.size() * 4);
  return v;
}

// Vulkan runs every weight type and op the harness has: every case must pass, none may skip.
void expect_conformance_passes(Backend& be) {
  const auto results = run_conformance(be);
  std::printf("%s", format_conformance_table(results).c_str());
  for (const auto& r : results)
    EXPECT_EQ(r.status, ConformanceStatus::Pass)
        << r.op << "/" << r.dtype << "/" << r.name << ": nmse " << r.nmse << " (seed " << r.seed << ") " << r.detail;
}

vk::PhysicalDeviceInfo fake(VkPhysicalDeviceType type, uint32_t api = VK_API_VERSION_1_2) {
  vk::PhysicalDeviceInfo d;
  d.type = type;
  d.api_version = api;
  d.has_compute_queue = true;
  return d;
}

}  // namespace

TEST(Vulkan, ListsDevicesWithTheirProperties) {
  auto devices = list_vulkan_devices();
  if (!devices) GTEST_SKIP() << devices.error();
  ASSERT_FALSE(devices->empty());
  for (size_t i = 0; i < devices->size(); ++i) {
    const auto& d = (*devices)[i];
    EXPECT_EQ(d.index, int(i));
    EXPECT_FALSE(d.name.empty());
    EXPECT_NE(d.type, "other") << d.name;
    if (d.usable) {
      EXPECT_GT(d.subgroup_size, 0u) << d.name;
    }
  }
}

TEST(Vulkan, PrefersDiscreteOverIntegratedOverCpu) {
  using T = VkPhysicalDeviceType;
  const T cpu = VK_PHYSICAL_DEVICE_TYPE_CPU, igpu = VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU,
          dgpu = VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU, virt = VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU;
  EXPECT_EQ(vk::pick_best_device({fake(cpu), fake(igpu), fake(dgpu), fake(igpu)}), 2);
  EXPECT_EQ(vk::pick_best_device({fake(igpu), fake(dgpu)}), 1);  // never integrated while a discrete exists
  EXPECT_EQ(vk::pick_best_device({fake(cpu), fake(virt)}), 1);
  EXPECT_EQ(vk::pick_best_device({fake(dgpu, VK_API_VERSION_1_0), fake(cpu)}), 1);  // unusable discrete
  EXPECT_EQ(vk::pick_best_device({}), -1);
}

TEST(Vulkan, InfoDescribesTheChosenDevice) {
  VULKAN_OR_SKIP(be);
  auto devices = list_vulkan_devices();
  ASSERT_TRUE(devices.ok());
  const BackendInfo info = be->info();
  EXPECT_EQ(info.name, "vulkan");
  EXPECT_FALSE(info.vendor.empty());
  EXPECT_FALSE(info.driver.empty());
  EXPECT_GT(info.memory_bytes, 0u);
  EXPECT_GT(info.subgroup_size, 0u);
  bool named = false;
  for (const auto& d : *devices) named |= info.device.find(d.name) != std::string::npos;
  EXPECT_TRUE(named) << info.device;
}

TEST(Vulkan, BadDeviceIndexIsAClearError) {
  auto devices = list_vulkan_devices();
  if (!devices) GTEST_SKIP() << devices.error();
  auto be = create_vulkan_backend(int(devices->size()) + 5);
  ASSERT_FALSE(be.ok());
  EXPECT_NE(be.error().find("out of range"), std::string::npos) << be.error();
  EXPECT_NE(be.error().find((*devices)[0].name), std::string::npos) << "the error should list the devices: " << be.error();
}

TEST(Vulkan, MissingDriverIsAClearError) {
  ScopedEnv env("VK_ICD_FILENAMES", "/nonexistent/pagoda_no_such_icd.json");
  ScopedEnv env2("VK_DRIVER_FILES", "/nonexistent/pagoda_no_such_icd.json");
  auto be = create_vulkan_backend(-1);
  ASSERT_FALSE(be.ok());
  const std::string& e = be.error();
  EXPECT_TRUE(e.find("no Vulkan driver") != std::string::npos || e.find("no Vulkan device") != std::string::npos) << e;
}

TEST(Vulkan, HugeAllocationIsAnErrorNotACrash) {
  VULKAN_OR_SKIP(be);
  auto huge = be->alloc(size_t(1) << 50);
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.error().find("out of device memory"), std::string::npos) << huge.error();
  auto small = be->alloc(4096);  // the backend is still usable
  EXPECT_TRUE(small.ok());
  EXPECT_TRUE(be->sync().ok());
}

namespace {

// Queues an add reading `a`, then overwrites `a`: the add must still see the old contents.
void check_upload_ordering(Backend& be) {
  Buf a = make_f32(be, 4, 33, 1.0f), b = make_f32(be, 4, 33, 0.0f), c = make_f32(be, 4, 33, 0.0f);
  ASSERT_TRUE(be.sync().ok());
  be.add(a.t, a.t, b.t);  // b = 2, queued, not yet run
  const std::vector<float> fives(4 * 33, 5.0f);
  be.upload(a.t, fives.data(), fives.size() * 4);  // must land after the add above read a
  be.add(a.t, b.t, c.t);                           // c = 5 + 2
  for (float x : read(be, c.t)) ASSERT_EQ(x, 7.0f);
  EXPECT_TRUE(be.sync().ok());
}

}  // namespace

TEST(Vulkan, UploadIsOrderedAfterQueuedOps) {
  VULKAN_OR_SKIP(be);
  check_upload_ordering(*be);
}

TEST(Vulkan, LargeUploadBehindQueuedWorkIsStagedInChunks) {
  VULKAN_OR_SKIP(be);
  Buf a = make_f32(*be, 1, 64, 1.0f), b = make_f32(*be, 1, 64, 0.0f);
  auto big = be->alloc(size_t(80) << 20);  // more than the backend stages before flushing
  ASSERT_TRUE(big.ok()) << big.error();
  const Tensor t{big->get(), 0, DType::F32, 1, int64_t((size_t(80) << 20) / 4)};
  std::vector<float> v(size_t(t.cols));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i % 4093);
  be->add(a.t, a.t, b.t);  // queued work, so the upload below cannot write memory directly
  be->upload(t, v.data(), v.size() * 4);
  const std::vector<float> back = read(*be, t);
  ASSERT_TRUE(be->sync().ok());
  EXPECT_TRUE(back == v);
  for (float x : read(*be, b.t)) ASSERT_EQ(x, 2.0f);
}

// The discrete-GPU path (no mapped device memory, every transfer staged), on any device.
TEST(Vulkan, ConformanceAndOrderingWithStagedTransfers) {
  ScopedEnv env("PAGODA_VK_NO_HOST_MAPPING", "1");
  VULKAN_OR_SKIP(be);
  check_upload_ordering(*be);
  expect_conformance_passes(*be);
}

TEST(Vulkan, BufferDroppedBeforeSyncStaysAliveUntilTheWorkIsDone) {
  VULKAN_OR_SKIP(be);
  Buf out = make_f32(*be, 1, 1000, 0.0f);
  {
    Buf tmp = make_f32(*be, 1, 1000, 3.0f);
    be->add(tmp.t, tmp.t, out.t);
  }  // tmp's memory is released here while the add is still queued
  for (float x : read(*be, out.t)) ASSERT_EQ(x, 6.0f);
  EXPECT_TRUE(be->sync().ok());
}

TEST(Vulkan, BadShapesFailAtSyncNamingTheOp) {
  VULKAN_OR_SKIP(be);
  Buf w = make_f32(*be, 4, 32, 1.0f), x = make_f32(*be, 1, 16, 1.0f), out = make_f32(*be, 1, 4, 0.0f);
  be->matmul(w.t, x.t, out.t);  // x is narrower than w's rows
  const Status s = be->sync();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("matmul"), std::string::npos) << s.error();
}

// rope_freqs needs head_dim/2 F32 divisors, and a K-quant weight whole 256-element super-blocks:
// anything else is an error naming the op, not a read past the tensor.
TEST(Vulkan, BadRopeFactorsAndPartialSuperBlocksFailAtSync) {
  for (int which = 0; which < 2; ++which) {
    VULKAN_OR_SKIP(be);
    Buf x = make_f32(*be, 2, 64, 1.0f), f = make_f32(*be, 1, 16, 2.0f), out = make_f32(*be, 1, 4, 0.0f);
    auto pos = be->alloc(8);
    ASSERT_TRUE(pos.ok());
    const Tensor tp{pos->get(), 0, DType::I32, 2, 1};
    const std::vector<int32_t> p = {3, 7};
    be->upload(tp, p.data(), 8);
    std::string want;
    if (which == 0) {
      be->rope_freqs(x.t, tp, f.t, 2, 32, 10000.0f);  // 16 divisors for head_dim 32: right
      ASSERT_TRUE(be->sync().ok());
      be->rope_freqs(x.t, tp, f.t, 1, 64, 10000.0f);  // head_dim 64 needs 32
      want = "head_dim/2 = 32";
    } else {
      Tensor w = x.t;  // 64 bytes viewed as Q4_K: 128 columns is half a super-block
      w.dtype = DType::Q4_K;
      w.rows = 1;
      w.cols = 128;
      be->matmul(w, x.t.row_slice(0, 1), out.t);
      want = "not a multiple of 256";
    }
    const Status s = be->sync();
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().find(which == 0 ? "rope_freqs" : "matmul"), std::string::npos) << s.error();
    EXPECT_NE(s.error().find(want), std::string::npos) << s.error();
  }
}

TEST(Vulkan, ProfilingReportsPerOpTimes) {
  VULKAN_OR_SKIP(be);
  vulkan_set_profiling(*be, true);
  Buf w = make_f32(*be, 64, 256, 0.5f), x = make_f32(*be, 3, 256, 1.0f), out = make_f32(*be, 3, 64, 0.0f);
  be->matmul(w.t, x.t, out.t);
  be->add(out.t, out.t, out.t);
  ASSERT_TRUE(be->sync().ok());
  const auto timings = vulkan_op_timings(*be);
  if (timings.empty()) GTEST_SKIP() << "device has no compute timestamps";
  bool saw_matmul = false;
  for (const auto& [op, ms] : timings) {
    EXPECT_GE(ms, 0.0) << op;
    saw_matmul |= op == "matmul";
  }
  EXPECT_TRUE(saw_matmul);
  for (float v : read(*be, out.t)) ASSERT_EQ(v, 256.0f);  // 2 * (256 * 0.5)
}

// Proves the error counter is live, so the zero asserted below means something.
TEST(Vulkan, ValidationErrorsAreCounted) {
  auto dev = vk::Device::create(-1, /*validation=*/true);
  if (!dev) GTEST_SKIP() << dev.error();
  if (!(*dev)->validation_enabled()) GTEST_SKIP() << "VK_LAYER_KHRONOS_validation is not installed";
  const uint64_t before = vulkan_validation_error_count();
  auto bci = vk::vk_struct<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
  bci.size = 64;
  bci.usage = 0;  // invalid on purpose: a buffer needs at least one usage bit
  VkBuffer b = VK_NULL_HANDLE;
  if (vkCreateBuffer((*dev)->handle(), &bci, nullptr, &b) == VK_SUCCESS) vkDestroyBuffer((*dev)->handle(), b, nullptr);
  EXPECT_GT(vulkan_validation_error_count(), before);
}

TEST(Vulkan, ConformanceIsValidationClean) {
  ScopedEnv env("PAGODA_VK_VALIDATION", "1");
  // Synchronization validation too: it reports any missing barrier between dependent commands.
  ScopedEnv sync("VK_LAYER_ENABLES", "VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT");
  VULKAN_OR_SKIP(be);
  if (!vulkan_validation_active(*be)) GTEST_SKIP() << "VK_LAYER_KHRONOS_validation is not installed";
  const uint64_t before = vulkan_validation_error_count();
  expect_conformance_passes(*be);
  EXPECT_TRUE(be->sync().ok());
  be.reset();  // destruction is validated too
  EXPECT_EQ(vulkan_validation_error_count(), before);
}

TEST(Vulkan, ConformanceWithoutSubgroupOps) {
  ScopedEnv env("PAGODA_VK_NO_SUBGROUP", "1");
  VULKAN_OR_SKIP(be);
  EXPECT_NE(be->info().device.find("no subgroup ops"), std::string::npos) << be->info().device;
  expect_conformance_passes(*be);
}

namespace {

// Greedy tokens of stories260K on `be`, with the KV cache in `kv_dtype`.
std::vector<int32_t> greedy_stories(Backend& be, DType kv_dtype, int32_t n) {
  auto m = LoadedModel::load(std::string(PAGODA_STORIES_GGUF), be);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error());
  if (!m) return {};
  // Several prefill chunks of 5, then decode.
  auto out = oracle_greedy(**m, be, (*m)->tokenizer->encode("Once upon a time, a little girl", true), n, kv_dtype, 16, 5);
  EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.error());
  return out.ok() ? *out : std::vector<int32_t>{};
}

}  // namespace

TEST(Vulkan, Stories260KGreedyMatchesTheCpu) {
  if (!std::filesystem::exists(std::string(PAGODA_STORIES_GGUF))) GTEST_SKIP() << "model missing";
  VULKAN_OR_SKIP(be);
  CpuBackend cpu(CpuOptions{.reference = true});
  for (DType kv : {DType::F32, DType::F16}) {
    const auto want = greedy_stories(cpu, kv, 40);
    ASSERT_EQ(want.size(), 40u);
    EXPECT_EQ(greedy_stories(*be, kv, 40), want) << "kv " << dtype_name(kv);
  }
  EXPECT_TRUE(be->sync().ok());
}
