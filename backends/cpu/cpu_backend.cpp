#include "backends/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

namespace pagoda {
namespace {

class HostBuffer final : public DeviceBuffer {
 public:
  explicit HostBuffer(size_t n) : size_(n) {
#if !defined(__SANITIZE_ADDRESS__)  // ASan sees heap blocks' edges, not a mapping's
    // A buffer of about 2 MiB or more (the KV cache's per-layer K and V, large scratch) is its own
    // anonymous mapping on a 2 MiB boundary, so that its 2 MiB spans can lie in huge pages:
    // decode attention streams the cache block by block, and through 4 KiB pages it paid a TLB
    // miss at every page and lost the hardware prefetcher at every page edge (bench attention, 1B
    // layer shape, F32, ctx 1024: 18.5 -> 24.4 GB/s on two threads, docs/perf.md). Fresh pages,
    // not the heap's: memory the allocator hands back may already be mapped in 4 KiB pages. The
    // spans are not advised here: a KV span becomes a huge page once half of it is written
    // (collapse_filled()), so a short context keeps the resident set it had in small pages; a
    // whole upload advises the buffer first (advise_huge()). The last span is eligible only if the
    // buffer fills 7/8 of it, so a huge page never holds more than 256 KiB past the buffer's end.
    if (n >= kHugePage - kHugePage / 8) {
      const size_t len = (n + page_size() - 1) / page_size() * page_size();
      const size_t tail = len % kHugePage, huge = len - tail + (tail >= kHugePage - kHugePage / 8 ? kHugePage : 0);
      const size_t span = std::max(len, huge);
      void* m = mmap(nullptr, span + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m != MAP_FAILED) {
        const uintptr_t lo = reinterpret_cast<uintptr_t>(m), at = (lo + kHugePage - 1) / kHugePage * kHugePage;
        if (at > lo) munmap(m, at - lo);
        if (lo + span + kHugePage > at + span) munmap(reinterpret_cast<void*>(at + span), lo + span + kHugePage - (at + span));
        data_ = reinterpret_cast<uint8_t*>(at);
        mapped_ = span;
        huge_ = huge;
        return;
      }
    }
#endif
    // 64-byte alignment keeps vector loads within cache lines.
    data_ = static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64));
  }
  // Memory someone else owns (a mapped model file), kept alive by `owner`; never freed here and
  // never written (the mapping is read-only: ops only read weights).
  HostBuffer(const void* p, size_t n, std::shared_ptr<const void> owner)
      : data_(static_cast<uint8_t*>(const_cast<void*>(p))), size_(n), borrowed_(true), owner_(std::move(owner)) {}
  ~HostBuffer() override {
    if (mapped_) munmap(data_, mapped_);
    else if (!borrowed_) std::free(data_);
    std::free(panels_.load());
  }
  size_t size() const override { return size_; }
  uint8_t* data() const { return data_; }
  // The panels (fast::pack_panels) the weight in this buffer is packed into once made, else null;
  // the buffer's own bytes are then no longer read.
  uint8_t* panels() const { return panels_.load(std::memory_order_acquire); }
  // A float weight (dtype, rows x cols, the whole buffer) to be packed into panels when a matmul
  // asks (CpuBackend::settle); read_done as for Backend::repack_matmul_weight.
  void plan_panels(DType dtype, int64_t rows, int64_t cols, std::function<void(size_t, size_t)> read_done) {
    plan_ = std::make_unique<PanelPlan>();
    plan_->dtype = dtype, plan_->rows = rows, plan_->cols = cols, plan_->read_done = std::move(read_done);
  }
  bool packable() const { return plan_ != nullptr; }
  // Whether a matmul used the weight before (and marks that one has now).
  bool used_before() { return plan_->used.exchange(true, std::memory_order_relaxed); }
  // Packs the weight now (once, whichever thread comes first), about 4 MiB of the source at a time,
  // handing each range back as done: the resident set grows by a chunk at most while a mapped
  // weight is packed. Without the memory for it the weight stays as it is (matmul then packs per
  // call, with the same results).
  void pack(ThreadPool& pool) {
    std::lock_guard<std::mutex> lock(plan_->mu);
    if (panels()) return;
    const PanelPlan& pl = *plan_;
    const size_t n = fast::panel_bytes(pl.dtype, pl.rows, pl.cols);
    // On a 2 MiB boundary and advised for huge pages, as the mapped file is (GgufFile::map): decode
    // streams every weight once a step, and 4 KiB pages cost it TLB misses (docs/perf.md).
    const size_t align = n >= kHugePage ? kHugePage : 64, alloc = (n + 63) / 64 * 64;
    auto* packed = static_cast<uint8_t*>(std::aligned_alloc(align, (alloc + align - 1) / align * align));
    if (!packed) return;
    if (align == kHugePage) madvise(packed, (alloc + page_size() - 1) / page_size() * page_size(), MADV_HUGEPAGE);
    const size_t stride = row_bytes(pl.dtype, pl.cols);
    const int64_t band = fast::panel_band_rows();
    const int64_t chunk = std::max<int64_t>(1, int64_t((size_t(4) << 20) / (stride * size_t(band)))) * band;
    for (int64_t r0 = 0; r0 < pl.rows; r0 += chunk) {
      const int64_t r1 = std::min(pl.rows, r0 + chunk);
      fast::pack_panels(pool, pl.dtype, data_, pl.rows, pl.cols, r0, r1, packed);
      if (pl.read_done) pl.read_done(size_t(r0) * stride, size_t(r1 - r0) * stride);
    }
    panels_.store(packed, std::memory_order_release);
  }
  bool ok() const { return data_ != nullptr || size_ == 0; }

  // The chunks under bytes [off, off + n) of the buffer that were never made present, appended
  // to `fresh` (each chunk once; the caller then makes them present with populate()). Decode
  // writes each new position's K and V rows into pages never touched before, and the first write
  // to a page is a fault; populating ahead of the writes is cheaper and can be shared out. The KV
  // cache is allocated whole but filled as used, so it is populated as used too, kPopulateChunk of
  // address space at a time.
  struct Chunk {
    uintptr_t begin, end;  // page-aligned
    uintptr_t lo, hi;      // the buffer's own bytes within it
  };
  void unpopulated(size_t off, size_t n, std::vector<Chunk>& fresh) {
    if (borrowed_ || data_ == nullptr || n == 0 || off >= size_) return;
    n = std::min(n, size_ - off);
    // Chunks of the page-aligned span around the buffer: the pages its ends share with the
    // allocator's neighbouring memory are mapped and writable too, and populating a present page
    // changes nothing; only the buffer's own bytes are ever read (populate()).
    const uintptr_t page = page_size();
    const uintptr_t lo = reinterpret_cast<uintptr_t>(data_), hi = lo + size_;
    const uintptr_t base = lo / page * page, end = (hi + page - 1) / page * page;
    const uintptr_t a = lo + off;
    if (populated_.empty()) populated_.assign((end - base + kPopulateChunk - 1) / kPopulateChunk, false);
    for (size_t c = (a - base) / kPopulateChunk; c <= (a + n - 1 - base) / kPopulateChunk; ++c) {
      if (populated_[c]) continue;
      populated_[c] = true;
      const uintptr_t c0 = base + c * kPopulateChunk, c1 = std::min(end, c0 + kPopulateChunk);
      fresh.push_back({c0, c1, std::max(c0, lo), std::min(c1, hi)});
      // A mapped buffer starts on a 2 MiB boundary (base == lo): chunk c lies in span c / kSpanChunks.
      if (c0 - base < huge_ && !advised_) {
        const auto first = populated_.begin() + ptrdiff_t(c / kSpanChunks * kSpanChunks);
        const auto last = populated_.begin() + ptrdiff_t(std::min(populated_.size(), (c / kSpanChunks + 1) * kSpanChunks));
        if (size_t(std::count(first, last, true)) == kSpanChunks / 2) to_collapse_.push_back(c / kSpanChunks);
      }
    }
  }

  // The 2 MiB spans that unpopulated() found half written since the last call become huge pages
  // (MADV_COLLAPSE copies the pages present and fills the rest: about 0.7 ms a span on this
  // project's VM, once), and every chunk of them counts as present. Where the kernel cannot
  // collapse (before Linux 6.1), the span stays in small pages and fills as before.
  void collapse_filled() {
    for (const size_t sp : to_collapse_) {
      void* at = data_ + sp * kHugePage;
      madvise(at, kHugePage, MADV_HUGEPAGE);  // so that khugepaged and later faults keep it huge
      if (madvise(at, kHugePage, kMadvCollapse) != 0) continue;
      // The last span may reach past the buffer's chunks (it is eligible from 7/8 full).
      const size_t c0 = sp * kSpanChunks, c1 = std::min(populated_.size(), c0 + kSpanChunks);
      std::fill(populated_.begin() + ptrdiff_t(c0), populated_.begin() + ptrdiff_t(c1), true);
    }
    to_collapse_.clear();
  }
  // Advises every eligible span at once (before a write of the whole buffer: nothing to copy).
  void advise_huge() {
    if (huge_ == 0 || advised_) return;
    madvise(data_, huge_, MADV_HUGEPAGE);
    advised_ = true;
  }

  // Makes the pages of `chunks` present, the pool's threads each taking a share of the pages.
  // On this project's 2-vCPU VM (a paravirtualized MMU) a first write to a page costs about 10 us;
  // MADV_POPULATE_WRITE maps a page for 0.6 us, but the first access from user space then still
  // costs a hypervisor exit (about 5 us a page), so each populated page is also read once here,
  // on whichever thread populated it. Reading leaves what the buffer holds untouched, and only the
  // buffer's own bytes are read. Where MADV_POPULATE_WRITE is missing (kernels before 5.14) or
  // fails, nothing is done: a read would only map the zero page, and the write fault as before.
  static void populate(ThreadPool& pool, const std::vector<Chunk>& chunks) {
#if defined(MADV_POPULATE_WRITE)
    if (chunks.empty()) return;
    const int64_t page = int64_t(page_size());
    std::vector<int64_t> first(chunks.size() + 1, 0);  // chunk i's pages are [first[i], first[i + 1])
    for (size_t i = 0; i < chunks.size(); ++i) first[i + 1] = first[i] + int64_t(chunks[i].end - chunks[i].begin) / page;
    pool.parallel_for(first.back(), [&](int64_t p0, int64_t p1) {
      for (size_t i = 0; i < chunks.size(); ++i) {
        const int64_t b = std::max(p0, first[i]), e = std::min(p1, first[i + 1]);
        if (b >= e) continue;
        const Chunk& c = chunks[i];
        const uintptr_t from = c.begin + uintptr_t((b - first[i]) * page), to = c.begin + uintptr_t((e - first[i]) * page);
        if (madvise(reinterpret_cast<void*>(from), to - from, MADV_POPULATE_WRITE) != 0) continue;
        for (uintptr_t p = from; p < to; p += uintptr_t(page))
          if (const uintptr_t at = std::max(p, c.lo); at < c.hi) (void)*reinterpret_cast<const volatile uint8_t*>(at);
      }
    });
#else
    (void)pool, (void)chunks;
#endif
  }

 private:
  static uintptr_t page_size() {  // asked once: unpopulated() runs for every K/V row a step writes
    static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    return page;
  }
  static constexpr uintptr_t kPopulateChunk = 64 << 10;
  static constexpr size_t kHugePage = size_t(2) << 20;
  static constexpr size_t kSpanChunks = kHugePage / kPopulateChunk;
#if defined(MADV_COLLAPSE)
  static constexpr int kMadvCollapse = MADV_COLLAPSE;
#else
  static constexpr int kMadvCollapse = 25;  // Linux 6.1's value; older kernels refuse it
#endif
  uint8_t* data_ = nullptr;
  size_t size_;
  size_t mapped_ = 0;  // the length of data_'s own mapping, or 0 when it came from the heap
  size_t huge_ = 0;    // the bytes from data_ that may lie in huge pages (whole 2 MiB spans)
  bool advised_ = false;
  std::vector<size_t> to_collapse_;  // spans found half written, for collapse_filled()
  bool borrowed_ = false;
  std::shared_ptr<const void> owner_;
  struct PanelPlan {
    DType dtype = DType::F32;
    int64_t rows = 0, cols = 0;
    std::function<void(size_t, size_t)> read_done;
    std::mutex mu;
    std::atomic<bool> used{false};
  };
  std::unique_ptr<PanelPlan> plan_;
  std::atomic<uint8_t*> panels_{nullptr};
  std::vector<bool> populated_;  // per kPopulateChunk, once unpopulated() is first called
};

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto c = line.find(':');
      if (c != std::string::npos) return line.substr(c + 2);
    }
  }
  return "cpu";
}

}  // namespace

HostTensor CpuBackend::host(const Tensor& t) {
  auto* hb = static_cast<HostBuffer*>(t.buf);
  if (!hb) return HostTensor{nullptr, t.dtype, t.rows, t.cols};
  if (uint8_t* p = hb->panels()) return HostTensor{p, t.dtype, t.rows, t.cols, true};
  return HostTensor{hb->data() + t.offset, t.dtype, t.rows, t.cols, false, hb->packable() && !fast::kept_panels(t.dtype)};
}

Status check_cpu_threads(int threads) {
  if (threads < 0 || threads > kMaxCpuThreads)
    return make_error("CPU threads must be 1.." + std::to_string(kMaxCpuThreads) + " (or 0 for all cores); got " +
                      std::to_string(threads));
  return {};
}

CpuBackend::CpuBackend(CpuOptions opt) : opt_(opt) {
  int n = opt_.threads > 0 ? opt_.threads : int(std::thread::hardware_concurrency());
  if (opt_.reference || n < 1) n = 1;
  n = std::min(n, kMaxCpuThreads);  // callers check first (check_cpu_threads); this only keeps the pool bounded
  pool_ = std::make_unique<ThreadPool>(n);
}

BackendInfo CpuBackend::info() const {
  BackendInfo i;
  i.name = opt_.reference ? "cpu-ref" : "cpu";
  i.device = cpu_model_name() + " (" + std::to_string(pool_->size()) + " threads)";
  i.vendor = "host";
  return i;
}

bool CpuBackend::supports(Op op, DType dtype) const {
  switch (op) {
    case Op::Matmul:
    case Op::Embed: return dtype != DType::I32;
    case Op::KvStore:
    case Op::PagedAttention:
    case Op::AttentionWindow: return dtype == DType::F32 || dtype == DType::F16;
    case Op::Copy: return true;
    case Op::RopeFreqs: return dtype == DType::F32;
    default: return dtype == DType::F32;
  }
}

Result<BufferPtr> CpuBackend::alloc(size_t bytes) {
  auto b = std::make_shared<HostBuffer>(bytes);
  if (!b->ok()) return make_error("out of host memory allocating " + std::to_string(bytes) + " bytes");
  return BufferPtr(b);
}

Result<BufferPtr> CpuBackend::adopt_host(const void* src, size_t bytes, std::shared_ptr<const void> owner, bool* in_place) {
  *in_place = true;
  return BufferPtr(std::make_shared<HostBuffer>(src, bytes, std::move(owner)));
}

Result<bool> CpuBackend::repack_matmul_weight(const Tensor& w, std::function<void(size_t, size_t)> read_done) {
  auto* hb = static_cast<HostBuffer*>(w.buf);
  if (opt_.reference || !hb || hb->packable() || w.offset != 0 || w.bytes() != hb->size()) return false;
  if (fast::panel_bytes(w.dtype, w.rows, w.cols) == 0) return false;
  hb->plan_panels(w.dtype, w.rows, w.cols, std::move(read_done));
  return true;
}

// A weight planned for panels is packed at its first matmul of fewer than kPanelsBelowRows rows
// that is not its first use: decode, a verify pass, a batch of a few streams. Its first use (a
// cold start's prompt, however short) and prompt-sized batches take the file's layout, packed per
// call (0.8-0.9x of the packed panels' speed at 64 rows, about level from 256), so a cold start's
// first token does not wait for the packing, and a run that never decodes (perplexity, eval)
// never packs.
void CpuBackend::settle(const Tensor& w, int64_t rows) {
  constexpr int64_t kPanelsBelowRows = 64;
  auto* hb = static_cast<HostBuffer*>(w.buf);
  if (!hb || !hb->packable() || hb->panels()) return;
  if (hb->used_before() && rows < kPanelsBelowRows) hb->pack(*pool_);
}

void CpuBackend::host_parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  pool_->parallel_for(n, fn);
}
int CpuBackend::host_threads() const { return pool_->size(); }
Backend::HostPoolStats CpuBackend::host_pool_stats() const {
  const ThreadPool::BalanceStats b = pool_->balance_stats();
  return {pool_->shares(), b.jobs, b.thread_ns, b.idle_ns};
}

void CpuBackend::upload(const Tensor& dst, const void* src, size_t bytes) {
  if (auto* buf = static_cast<HostBuffer*>(dst.buf); buf && bytes >= buf->size() / 2) buf->advise_huge();
  std::memcpy(host(dst).data, src, bytes);
}

void CpuBackend::download(const Tensor& src, void* dst, size_t bytes) {
  std::memcpy(dst, host(src).data, bytes);
}

void CpuBackend::embed(const Tensor& table, const Tensor& ids, const Tensor& out) {
  if (host(table).panels) {  // a caller's bug (repack_matmul_weight's contract), never input's
    std::fprintf(stderr, "pagoda: internal error: embed() on a weight repacked for matmul\n");
    std::abort();
  }
  ref::embed(host(table), host(ids), host(out));
}
void CpuBackend::rms_norm(const Tensor& x, const Tensor& w, const Tensor& out, float eps) {
  const HostTensor hx = host(x), hw = host(w), ho = host(out);
  // A prompt's rows on the pool (each row's sum stays one serial chain, for its bits); a decode
  // step's row or few stay here.
  if (opt_.reference || hx.rows < 2 || hx.rows * hx.cols < fast::kPoolMinValues) return ref::rms_norm(hx, hw, ho, eps);
  pool_->parallel_for(hx.rows, [&](int64_t r0, int64_t r1) { ref::rms_norm_rows(hx, hw, ho, eps, r0, r1); });
}
void CpuBackend::matmul(const Tensor& w, const Tensor& x, const Tensor& out) {
  if (opt_.reference) return ref::matmul(host(w), host(x), host(out));
  settle(w, x.rows);
  fast::matmul(*pool_, host(w), host(x), host(out));
}
void CpuBackend::matmul_many(const Tensor& x, const Tensor* ws, const Tensor* outs, size_t n) {
  if (opt_.reference) return Backend::matmul_many(x, ws, outs, n);
  FewOrMany<HostTensor, 8> hw(n), ho(n);
  for (size_t i = 0; i < n; ++i) settle(ws[i], x.rows), hw[i] = host(ws[i]), ho[i] = host(outs[i]);
  fast::matmul_many(*pool_, host(x), hw.span(), ho.span());
}
void CpuBackend::rope(const Tensor& x, const Tensor& pos, int32_t n_heads, int32_t head_dim, float theta) {
  if (opt_.reference) return ref::rope(host(x), host(pos), n_heads, head_dim, theta);
  rope_cached(x, pos, nullptr, n_heads, head_dim, theta);
}
void CpuBackend::rope_freqs(const Tensor& x, const Tensor& pos, const Tensor& freq_factors, int32_t n_heads,
                            int32_t head_dim, float theta) {
  if (opt_.reference) return ref::rope_freqs(host(x), host(pos), host(freq_factors).f32(), n_heads, head_dim, theta);
  rope_cached(x, pos, host(freq_factors).f32(), n_heads, head_dim, theta);
}
void CpuBackend::rope_cached(const Tensor& x, const Tensor& pos, const float* factors, int32_t n_heads, int32_t head_dim,
                             float theta) {
  const HostTensor hx = host(x);
  const int32_t* p = host(pos).i32();
  const size_t rows = size_t(hx.rows), half = size_t(head_dim / 2);
  std::lock_guard lock(rope_mu_);
  const auto same = [&](const RopeTable& t) {
    return t.head_dim == head_dim && t.theta == theta && t.pos.size() == rows &&
           std::equal(t.pos.begin(), t.pos.end(), p) && t.factors.size() == (factors ? half : 0) &&
           (!factors || std::equal(t.factors.begin(), t.factors.end(), factors));
  };
  RopeTable* t = same(rope_[0]) ? &rope_[0] : same(rope_[1]) ? &rope_[1] : nullptr;
  if (!t) {
    t = &rope_[rope_next_];
    rope_next_ ^= 1;
    t->pos.assign(p, p + rows);
    t->factors.assign(factors, factors ? factors + half : factors);
    t->theta = theta, t->head_dim = head_dim;
    t->cs.resize(rows * half * 2);
    ref::rope_table(p, int64_t(rows), factors, head_dim, theta, t->cs.data());
  }
  const float* cs = t->cs.data();
  if (int64_t(rows) * n_heads * head_dim < fast::kPoolMinValues)
    return ref::rope_rows(hx, cs, n_heads, head_dim, 0, hx.rows);
  pool_->parallel_for(hx.rows, [&](int64_t r0, int64_t r1) { ref::rope_rows(hx, cs, n_heads, head_dim, r0, r1); });
}
void CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) {
  if (opt_.reference) ref::silu_mul(host(gate), host(up), host(out));
  else fast::silu_mul(*pool_, host(gate), host(up), host(out));
}
void CpuBackend::gelu_mul(const Tensor& gate, const Tensor& up, const Tensor& out) {
  if (opt_.reference) ref::gelu_mul(host(gate), host(up), host(out));
  else fast::gelu_mul(*pool_, host(gate), host(up), host(out));
}
void CpuBackend::scale(const Tensor& x, const Tensor& out, float s) { ref::scale(host(x), host(out), s); }
void CpuBackend::softcap(const Tensor& x, const Tensor& out, float cap) { ref::softcap(host(x), host(out), cap); }
void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  const uint8_t* s = host(src).data;
  uint8_t* d = host(dst).data;
  const int64_t n = int64_t(std::min(src.bytes(), dst.bytes()));
  // One core does not saturate memory bandwidth; split big copies (64 KiB pieces at least).
  constexpr int64_t kPiece = 64 << 10;
  if (opt_.reference || n < 2 * kPiece) {
    if (n > 0) std::memcpy(d, s, size_t(n));
    return;
  }
  pool_->parallel_for((n + kPiece - 1) / kPiece, [&](int64_t b, int64_t e) {
    const int64_t lo = b * kPiece, hi = std::min(n, e * kPiece);
    std::memcpy(d + lo, s + lo, size_t(hi - lo));
  });
}
void CpuBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) { ref::add(host(a), host(b), host(out)); }
void CpuBackend::kv_store(const Tensor& k, const Tensor& v, const Tensor& kc, const Tensor& vc, const Tensor& slots) {
  const HostTensor hs = host(slots);
  std::vector<HostBuffer::Chunk> fresh;
  for (const Tensor* c : {&kc, &vc}) {
    auto* buf = static_cast<HostBuffer*>(c->buf);
    const size_t stride = host(*c).row_stride();
    for (int64_t i = 0; i < k.rows; ++i)
      if (const int32_t s = hs.i32()[i]; s >= 0 && buf) buf->unpopulated(c->offset + size_t(s) * stride, stride, fresh);
  }
  HostBuffer::populate(*pool_, fresh);
  for (const Tensor* c : {&kc, &vc})
    if (auto* buf = static_cast<HostBuffer*>(c->buf)) buf->collapse_filled();
  ref::kv_store(host(k), host(v), host(kc), host(vc), host(slots));
}
void CpuBackend::paged_attention(const Tensor& q, const Tensor& kc, const Tensor& vc, const Tensor& seqs,
                                 const Tensor& bt, const Tensor& out, const AttentionParams& p) {
  if (opt_.reference) ref::paged_attention(host(q), host(kc), host(vc), host(seqs), host(bt), host(out), p);
  else fast::paged_attention(*pool_, host(q), host(kc), host(vc), host(seqs), host(bt), host(out), p);
}
void CpuBackend::softmax(const Tensor& x, const Tensor& out, float temperature) {
  ref::softmax(host(x), host(out), temperature);
}
void CpuBackend::argmax(const Tensor& x, const Tensor& out) { ref::argmax(host(x), host(out)); }
void CpuBackend::sample_probs(const Tensor& probs, const Tensor& u, const Tensor& out) {
  ref::sample_probs(host(probs), host(u), host(out));
}
void CpuBackend::verify(const Tensor& target, const Tensor& draft_probs, const Tensor& draft_tokens,
                        const Tensor& meta, const Tensor& uniforms, const Tensor& out, const VerifyParams& p) {
  ref::verify(host(target), host(draft_probs), host(draft_tokens), host(meta), host(uniforms), host(out), p);
}
void CpuBackend::adjust_logits(const Tensor& logits, const Tensor& adjust) {
  ref::adjust_logits(host(logits), host(adjust));
}
void CpuBackend::filter_probs(const Tensor& logits, const Tensor& probs, const Tensor& params) {
  ref::filter_probs(host(logits), host(probs), host(params));
}

}  // namespace pagoda
