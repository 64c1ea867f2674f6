// The CPU CUDA emulator's runtime (see cuda_emu.h): blocks run one after another, a block's
// threads as fibers that the scheduler below switches at barriers; streams queue their work
// until the host waits (or run it at once), or record it while captured; graphs replay what was
// recorded.
#include "cuda_emu.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EMU_ASAN 1
#endif
#endif
#if defined(EMU_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#include <chrono>
#include <deque>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <new>
#include <string>

struct CUstream_st {
  bool capturing = false;
  bool invalidated = false;
  bool origin = false;      // capturing since its own BeginCapture (not joined through an event)
  bool blocking = true;     // cudaStreamCreate's: ordered with the legacy default stream
  CUgraph_st* graph = nullptr;
  std::vector<size_t> tail;  // capturing: the nodes its next node will depend on
  uint64_t last = 0;  // the serial of its last queued operation (deferred streams)
};
struct CUevent_st {
  std::chrono::steady_clock::time_point t;
  bool done = false;    // its record has run
  uint64_t serial = 0;  // its record's place in the queue
  CUstream_st* stream = nullptr;  // ... on that stream
  CUgraph_st* capture_graph = nullptr;  // recorded in a capture: that graph, and the
  std::vector<size_t> capture_tail;     // recording stream's tail then
};
struct CUgraphNode_st {
  cudaGraphNodeType type = cudaGraphNodeTypeKernel;
  emu::KernelLaunch kernel;     // kernel nodes
  std::function<void()> host;   // copies, memsets, GEMMs
  std::vector<size_t> deps;     // indices of the nodes it depends on (all earlier)
  bool side = false;            // captured on a stream the capture forked to
};
struct CUgraph_st {
  // In capture order, which is one topological order: a chain when one stream captured it,
  // branches where the capture forked to other streams through events.
  std::vector<std::unique_ptr<CUgraphNode_st>> nodes;
};
struct CUgraphExec_st {
  std::vector<CUgraphNode_st> nodes;           // own copies (parameters too)
  std::map<const CUgraphNode_st*, size_t> of;  // the graph's node → its copy here
};
struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

namespace emu {
namespace {

constexpr int kWarp = 32;
#if defined(EMU_ASAN)
constexpr size_t kStack = 512 * 1024;  // AddressSanitizer's redzones make frames several times larger
#else
constexpr size_t kStack = 64 * 1024;
#endif
constexpr size_t kDeviceBytes = size_t{80} << 30;  // what the emulated card reports (an H100's)

cudaError_t g_last = cudaSuccess;
CUstream_st g_default_stream;

cudaError_t fail(cudaError_t e) {
  g_last = e;
  return e;
}
CUstream_st* stream_of(cudaStream_t s) { return s ? s : &g_default_stream; }

// ---- asynchronous streams -------------------------------------------------------------------
// One queue for all streams, in issue order. A wait of the host runs only what it waits for:
// the stream's (or event's) work up to that point and what that work depends on, namely the
// earlier work of its own stream, the legacy default stream's rules (its work follows all
// earlier work of blocking streams, and theirs follows its), and the records of the events its
// streams wait for (cudaStreamWaitEvent). Other streams' work stays queued, so a stream that
// reads what another stream writes without waiting for it reads it unwritten.
struct Pending {
  uint64_t serial;
  CUstream_st* st;
  std::function<void()> run;
};
std::deque<Pending> g_pending;
uint64_t g_serial = 0;
bool g_deferred_set = false, g_deferred = true;

bool deferred_now() {
  if (!g_deferred_set) {
    g_deferred_set = true;
    const char* e = std::getenv("EMU_STREAMS");
    const std::string v = e ? e : "";
    if (v == "immediate") g_deferred = false;
    else if (!v.empty() && v != "deferred") {
      std::fprintf(stderr, "cuda emulator: EMU_STREAMS='%s': expected deferred or immediate\n", e);
      std::exit(2);
    }
  }
  return g_deferred;
}
// Runs everything issued up to serial (inclusive).
void drain_to(uint64_t serial) {
  while (!g_pending.empty() && g_pending.front().serial <= serial) {
    Pending p = std::move(g_pending.front());
    g_pending.pop_front();
    p.run();
  }
}
void drain_all() { drain_to(UINT64_MAX); }
// Whether work issued to st must follow earlier work of `earlier`'s stream.
bool follows(const CUstream_st* st, const CUstream_st* earlier) {
  if (st == earlier) return true;
  if (st == &g_default_stream) return earlier->blocking;
  return st->blocking && earlier == &g_default_stream;
}
// Runs the queued operation `serial` (if it has not run) after what it depends on.
void run_queued(uint64_t serial) {
  auto at = [](uint64_t s) {
    return std::find_if(g_pending.begin(), g_pending.end(), [s](const Pending& p) { return p.serial == s; });
  };
  auto it = at(serial);
  if (it == g_pending.end()) return;
  const CUstream_st* st = it->st;
  for (;;) {  // the oldest earlier operation it follows, until none is left
    auto dep = std::find_if(g_pending.begin(), g_pending.end(),
                            [&](const Pending& p) { return p.serial < serial && follows(st, p.st); });
    if (dep == g_pending.end()) break;
    run_queued(dep->serial);
  }
  it = at(serial);
  if (it == g_pending.end()) return;
  Pending p = std::move(*it);
  g_pending.erase(it);
  p.run();
}
// Runs st's work issued up to serial (inclusive), with what it depends on.
void drain_stream(const CUstream_st* st, uint64_t serial) {
  uint64_t last = 0;
  for (const Pending& p : g_pending)
    if (p.st == st && p.serial <= serial) last = p.serial;
  if (last) run_queued(last);
}
// Queues fn on the stream (or runs it, when streams are immediate); returns its serial.
uint64_t enqueue(CUstream_st* st, std::function<void()> fn) {
  const uint64_t serial = ++g_serial;
  st->last = serial;
  if (!deferred_now()) {
    drain_all();
    fn();
  } else {
    g_pending.push_back({serial, st, std::move(fn)});
  }
  return serial;
}

// Which allocation a pointer falls in: device memory (cudaMalloc) or pinned host memory
// (cudaMallocHost); anything else is pageable host memory.
std::map<const char*, size_t> g_device_ranges, g_pinned_ranges;
bool in_ranges(const std::map<const char*, size_t>& m, const void* p) {
  const char* c = static_cast<const char*>(p);
  auto it = m.upper_bound(c);
  if (it == m.begin()) return false;
  --it;
  return c < it->first + std::max<size_t>(it->second, 1);
}

// ---- context switches -------------------------------------------------------------------------
// On x86-64 a fiber switch saves the callee-saved registers on the old stack and pops them from
// the new one (no system call, unlike swapcontext's signal-mask calls: a block of 256 threads
// switches thousands of times). Elsewhere, ucontext. Under AddressSanitizer every switch tells it
// which stack is live (its fiber interface), so the kernels can run in the sanitized build.
struct StackBounds {
  const void* bottom = nullptr;  // the scheduler's: learnt at its first switch into a fiber
  size_t size = 0;
  bool dying = false;  // a finished fiber's last switch: its fake stack can go
};
#if defined(EMU_ASAN)
void before_switch(void** fake, const StackBounds& to) {
  __sanitizer_start_switch_fiber(fake, to.bottom, to.size);
}
void after_switch(void* fake, StackBounds* from) {
  const void* bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(fake, &bottom, &size);
  if (from && !from->bottom) {
    from->bottom = bottom;
    from->size = size;
  }
}
#else
void before_switch(void**, const StackBounds&) {}
void after_switch(void*, StackBounds*) {}
#endif
#if defined(__x86_64__)
struct Context {
  void* sp = nullptr;
  StackBounds stack;
};
extern "C" void emu_switch_stack(void** save_sp, void* new_sp);
asm(R"(
  .text
  .globl emu_switch_stack
  .type emu_switch_stack, @function
emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch_stack, .-emu_switch_stack
)");
void switch_to(Context& from, Context& to) {
  void* fake = nullptr;
  before_switch(from.stack.dying ? nullptr : &fake, to.stack);
  emu_switch_stack(&from.sp, to.sp);
  after_switch(fake, nullptr);
}
// A fresh context that enters fn (which must never return) on the stack [base, base + size).
void make_context(Context& c, char* base, size_t size, void (*fn)()) {
  c.stack = StackBounds{base, size, false};
#if defined(EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(base, size);  // the redzones of the last fiber's frames on it
#endif
  auto top = reinterpret_cast<uintptr_t>(base + size) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                            // fn's return address: none (rsp ≡ 8 mod 16 at entry)
  *--sp = reinterpret_cast<void*>(fn);        // where emu_switch_stack's ret goes
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12–r15
  c.sp = sp;
}
#else
struct Context {
  ucontext_t uc;
  StackBounds stack;
};
void switch_to(Context& from, Context& to) {
  void* fake = nullptr;
  before_switch(from.stack.dying ? nullptr : &fake, to.stack);
  swapcontext(&from.uc, &to.uc);
  after_switch(fake, nullptr);
}
void make_context(Context& c, char* base, size_t size, void (*fn)()) {
  c.stack = StackBounds{base, size, false};
#if defined(EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(base, size);
#endif
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = base;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, fn, 0);
}
#endif

// ---- the fiber scheduler of one block --------------------------------------------------------
enum class State { ready, block_barrier, warp_barrier, done };
struct Fiber {
  Context ctx;
  dim3 tid;
  int linear = 0;
  State state = State::ready;
};
struct Block {
  std::vector<Fiber> fibers;
  Context sched;
  dim3 bid, bdim, gdim;
  const KernelLaunch* launch = nullptr;
  void* params = nullptr;
  std::vector<uint64_t> slots;  // one per thread: warp exchanges
  std::vector<char> smem;
  size_t static_smem = 0;  // the static __shared__ bytes its threads have declared so far
  uint64_t salt = 0;  // the launch's, for shuffled schedules
};
Block* g_block = nullptr;
Fiber* g_fiber = nullptr;
std::vector<void*> g_shared_seen;  // the static __shared__ variables the running block has poisoned
std::vector<std::unique_ptr<char[]>> g_stacks;
std::vector<CUstream_st*> g_capture_streams;  // capturing now (cudaMalloc and synchronisation invalidate them)

// ---- schedules ----------------------------------------------------------------------------
bool g_schedule_set = false;
Schedule g_schedule = Schedule::forward;
uint64_t g_seed = 1;
uint64_t g_launch_serial = 0;  // shuffle salt: every launch, block and turn gets its own order

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void read_schedule_env() {
  if (g_schedule_set) return;
  g_schedule_set = true;
  const char* e = std::getenv("EMU_SCHEDULE");
  if (!e || !*e) return;
  const std::string v(e);
  const std::string mode = v.substr(0, v.find(':'));
  if (mode == "forward") g_schedule = Schedule::forward;
  else if (mode == "reverse") g_schedule = Schedule::reverse;
  else if (mode == "shuffle") g_schedule = Schedule::shuffle;
  else {
    std::fprintf(stderr, "cuda emulator: EMU_SCHEDULE='%s': expected forward, reverse or shuffle[:SEED]\n", e);
    std::exit(2);
  }
  if (v.find(':') != std::string::npos) g_seed = std::strtoull(v.c_str() + v.find(':') + 1, nullptr, 10);
}

// 0, 1, …, n − 1 in the schedule's order; salt picks the shuffle.
void schedule_order(std::vector<int>& order, int n, uint64_t salt) {
  order.resize(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  if (g_schedule == Schedule::reverse) {
    std::reverse(order.begin(), order.end());
  } else if (g_schedule == Schedule::shuffle) {
    uint64_t r = mix(g_seed ^ mix(salt));
    for (int i = n - 1; i > 0; --i) {
      r = mix(r);
      std::swap(order[i], order[static_cast<int>(r % static_cast<uint64_t>(i + 1))]);
    }
  }
}

void yield_to_scheduler() { switch_to(g_fiber->ctx, g_block->sched); }

[[noreturn]] void fiber_entry() {
  after_switch(nullptr, &g_block->sched.stack);  // first entry: from the scheduler's stack
  g_block->launch->body(g_block->params);
  g_fiber->state = State::done;
  g_fiber->ctx.stack.dying = true;
  yield_to_scheduler();
  std::abort();  // a finished fiber is never resumed
}

void run_block(Block& b) {
  const int n = static_cast<int>(b.bdim.x * b.bdim.y * b.bdim.z);
  while (g_stacks.size() < static_cast<size_t>(n)) g_stacks.emplace_back(new char[kStack]);
  b.fibers.assign(n, Fiber{});
  b.slots.assign(n, 0);
  for (int i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    f.linear = i;
    f.tid = dim3(i % b.bdim.x, (i / b.bdim.x) % b.bdim.y, i / (b.bdim.x * b.bdim.y));
    make_context(f.ctx, g_stacks[i].get(), kStack, fiber_entry);
  }
  std::fill(b.smem.begin(), b.smem.end(), kPoison);  // a block's shared memory starts undefined
  g_shared_seen.clear();
  b.static_smem = 0;
  g_block = &b;
  std::vector<int> order;
  const uint64_t block_salt = mix(b.salt ^ (uint64_t{b.bid.x} | uint64_t{b.bid.y} << 32) ^ mix(b.bid.z));
  for (uint64_t turn = 0;; ++turn) {
    schedule_order(order, n, block_salt ^ mix(turn));
    for (const int i : order) {
      Fiber& f = b.fibers[i];
      if (f.state != State::ready) continue;
      g_fiber = &f;
      switch_to(b.sched, f.ctx);
    }
    int done = 0;
    for (const Fiber& f : b.fibers) done += f.state == State::done;
    if (done == n) break;
    // Warps whose every live lane waits at a warp barrier go on first (a block reduction's
    // shuffles run while the other warps wait at __syncthreads).
    bool released = false;
    for (int w = 0; w * kWarp < n; ++w) {
      bool all = true, any = false;
      for (int i = w * kWarp; i < std::min(n, (w + 1) * kWarp); ++i) {
        if (b.fibers[i].state == State::done) continue;
        any = true;
        all = all && b.fibers[i].state == State::warp_barrier;
      }
      if (any && all) {
        for (int i = w * kWarp; i < std::min(n, (w + 1) * kWarp); ++i)
          if (b.fibers[i].state == State::warp_barrier) b.fibers[i].state = State::ready;
        released = true;
      }
    }
    if (released) continue;
    bool all_block = true;
    for (const Fiber& f : b.fibers) all_block = all_block && (f.state == State::done || f.state == State::block_barrier);
    if (all_block) {
      for (Fiber& f : b.fibers)
        if (f.state == State::block_barrier) f.state = State::ready;
      continue;
    }
    std::fprintf(stderr, "cuda emulator: block (%u,%u,%u) of the kernel at %p deadlocked: threads wait at "
                 "different barriers (a __syncthreads or a full-mask shuffle not reached by all)\n",
                 b.bid.x, b.bid.y, b.bid.z, b.launch->func);
    std::abort();
  }
  g_block = nullptr;
  g_fiber = nullptr;
}

void execute(const KernelLaunch& l, void* params) {
  Block b;
  b.bdim = l.block;
  b.gdim = l.grid;
  b.launch = &l;
  b.params = params;
  b.smem.resize(std::max<size_t>(l.smem, 16));
  read_schedule_env();
  b.salt = mix(++g_launch_serial);
  // Blocks in the schedule's order: x fastest, then y, then z (the forward order).
  const uint64_t nxy = uint64_t{l.grid.x} * l.grid.y, blocks = nxy * l.grid.z;
  if (g_schedule == Schedule::forward || blocks > uint64_t{1} << 30) {
    for (unsigned z = 0; z < l.grid.z; ++z)
      for (unsigned y = 0; y < l.grid.y; ++y)
        for (unsigned x = 0; x < l.grid.x; ++x) {
          b.bid = dim3(x, y, z);
          run_block(b);
        }
    return;
  }
  std::vector<int> order;
  schedule_order(order, static_cast<int>(blocks), b.salt);
  for (const int i : order) {
    const uint64_t u = static_cast<uint64_t>(i);
    b.bid = dim3(static_cast<unsigned>(u % l.grid.x), static_cast<unsigned>(u / l.grid.x % l.grid.y),
                 static_cast<unsigned>(u / nxy));
    run_block(b);
  }
}

cudaError_t run_or_record(cudaStream_t s, CUgraphNode_st node) {
  CUstream_st* st = stream_of(s);
  if (st->capturing) {
    if (!st->invalidated) {
      node.deps = st->tail;
      node.side = !st->origin;
      st->tail = {st->graph->nodes.size()};
      st->graph->nodes.push_back(std::make_unique<CUgraphNode_st>(std::move(node)));
    }
    return cudaSuccess;
  }
  enqueue(st, [node = std::move(node)] {
    if (node.type == cudaGraphNodeTypeKernel)
      execute(node.kernel, node.kernel.params.get());
    else
      node.host();
  });
  return cudaSuccess;
}

// The order a graph launch runs its nodes in, one of the orders its dependencies allow: forward,
// the capture order (branches run as soon as they were forked); reversed, each branch as late as
// possible (just before the first node that depends on it), so that a node of the main chain
// that writes what a branch still reads, or reads what it has not written yet, shows; shuffled,
// a seeded random topological order.
std::vector<size_t> graph_order(const std::vector<CUgraphNode_st>& nodes) {
  read_schedule_env();
  const size_t n = nodes.size();
  std::vector<size_t> order;
  order.reserve(n);
  if (g_schedule == Schedule::forward) {
    for (size_t i = 0; i < n; ++i) order.push_back(i);
    return order;
  }
  std::vector<char> done(n, 0);
  if (g_schedule == Schedule::reverse) {
    // Depth first from each main-chain node, dependencies in capture order.
    std::vector<std::pair<size_t, size_t>> stack;  // node, next dependency to look at
    auto run_with_deps = [&](size_t root) {
      if (done[root]) return;
      stack.push_back({root, 0});
      while (!stack.empty()) {
        auto& [i, d] = stack.back();
        if (d < nodes[i].deps.size()) {
          const size_t dep = nodes[i].deps[d++];
          if (!done[dep]) stack.push_back({dep, 0});
          continue;
        }
        if (!done[i]) {
          done[i] = 1;
          order.push_back(i);
        }
        stack.pop_back();
      }
    };
    for (size_t i = 0; i < n; ++i)
      if (!nodes[i].side) run_with_deps(i);
    for (size_t i = 0; i < n; ++i) run_with_deps(i);
    return order;
  }
  std::vector<size_t> waiting(n), ready;
  std::vector<std::vector<size_t>> users(n);
  for (size_t i = 0; i < n; ++i) {
    waiting[i] = nodes[i].deps.size();
    for (const size_t d : nodes[i].deps) users[d].push_back(i);
    if (!waiting[i]) ready.push_back(i);
  }
  uint64_t r = mix(g_seed ^ mix(++g_launch_serial));
  while (!ready.empty()) {
    r = mix(r);
    const size_t pick = static_cast<size_t>(r % ready.size());
    const size_t i = ready[pick];
    ready[pick] = ready.back();
    ready.pop_back();
    order.push_back(i);
    for (const size_t u : users[i])
      if (--waiting[u] == 0) ready.push_back(u);
  }
  return order;
}

// A call that must not happen while the calling thread captures (ThreadLocal mode: the backend
// captures on its own thread, and the tests run on one).
bool capture_forbids() {
  if (g_capture_streams.empty()) return false;
  for (CUstream_st* s : g_capture_streams) s->invalidated = true;
  g_last = cudaErrorStreamCaptureUnsupported;
  return true;
}

}  // namespace

const dim3& thread_idx() { return g_fiber->tid; }
const dim3& block_idx() { return g_block->bid; }
const dim3& block_dim() { return g_block->bdim; }
const dim3& grid_dim() { return g_block->gdim; }
int lane_id() { return g_fiber->linear % kWarp; }
void* dynamic_smem() { return g_block->smem.data(); }

void set_schedule(Schedule s, uint64_t seed) {
  g_schedule_set = true;
  g_schedule = s;
  g_seed = seed;
}
Schedule schedule() {
  read_schedule_env();
  return g_schedule;
}
uint64_t schedule_seed() {
  read_schedule_env();
  return g_seed;
}

void set_deferred(bool on) {
  drain_all();
  g_deferred_set = true;
  g_deferred = on;
}
bool deferred() { return deferred_now(); }

namespace {
constexpr size_t kSmemDefault = size_t{48} * 1024, kSmemOptin = size_t{227} * 1024;  // sm_90
// Dynamic shared memory a kernel may take once cudaFuncSetAttribute raised it (up to what an
// sm_90 block can opt in to, less its static shared memory), as on a GPU, which refuses a launch
// beyond it. A kernel not raised may take 48 KiB less its static shared memory.
std::map<const void*, size_t> g_smem_limits;
// The most static __shared__ bytes a block of the kernel has declared so far. A GPU knows this
// from the binary; the emulator learns it as blocks run (a declaration on a path no block took
// is not counted), so cudaFuncGetAttributes reports it from the kernel's second launch on.
std::map<const void*, size_t> g_static_smem;
size_t static_smem_of(const void* func) {
  const auto it = g_static_smem.find(func);
  return it == g_static_smem.end() ? 0 : it->second;
}
size_t dynamic_smem_limit(const void* func) {
  const auto it = g_smem_limits.find(func);
  return it != g_smem_limits.end() ? it->second : kSmemDefault - std::min(kSmemDefault, static_smem_of(func));
}
}  // namespace

void shared_here(void* p, size_t bytes) {
  if (!g_block || std::find(g_shared_seen.begin(), g_shared_seen.end(), p) != g_shared_seen.end()) return;
  g_shared_seen.push_back(p);
  std::memset(p, kPoison, bytes);
  // Static and dynamic shared memory share the block's budget: a launch whose sum is over it
  // fails on a GPU (cudaErrorInvalidValue) however small each part is, so stop here, loudly.
  Block& b = *g_block;
  b.static_smem += bytes;
  const void* f = b.launch->func;
  size_t& seen = g_static_smem[f];
  seen = std::max(seen, b.static_smem);
  const bool raised = g_smem_limits.count(f) != 0;
  const size_t dynamic = raised ? g_smem_limits[f] : b.launch->smem;
  const size_t cap = raised ? kSmemOptin : kSmemDefault;
  if (b.static_smem + dynamic > cap) {
    std::fprintf(stderr, "cuda emulator: the kernel at %p declares %zu bytes of static shared memory beside %zu "
                 "dynamic (%s): over the %zu a block may have; a GPU refuses this launch\n",
                 f, b.static_smem, dynamic, raised ? "its raised limit" : "this launch's", cap);
    std::abort();
  }
}

void syncthreads() {
  g_fiber->state = State::block_barrier;
  yield_to_scheduler();
}

static void warp_barrier() {
  g_fiber->state = State::warp_barrier;
  yield_to_scheduler();
}

void syncwarp() { warp_barrier(); }

uint64_t warp_exchange(uint64_t mine, int src) {
  Block& b = *g_block;
  const int me = g_fiber->linear, base = me - me % kWarp, n = static_cast<int>(b.slots.size());
  b.slots[me] = mine;
  warp_barrier();
  const int from = base + src;
  // An exited lane takes no part: what it would offer is undefined on a GPU, so poison.
  const uint64_t got = !(src >= 0 && src < kWarp && from < n) ? mine
                       : b.fibers[from].state == State::done ? ~uint64_t{0}
                                                             : b.slots[from];
  warp_barrier();  // every lane has read before any lane offers again
  return got;
}


cudaError_t submit(cudaStream_t s, KernelLaunch l) {
  const unsigned threads = l.block.x * l.block.y * l.block.z;
  if (threads == 0 || threads > 1024 || l.grid.x == 0 || l.grid.y == 0 || l.grid.z == 0 || l.grid.y > 65535 ||
      l.grid.z > 65535)
    return fail(cudaErrorInvalidConfiguration);
  if (l.smem > dynamic_smem_limit(l.func)) return fail(cudaErrorInvalidValue);
  CUgraphNode_st node;
  node.type = cudaGraphNodeTypeKernel;
  node.kernel = std::move(l);
  return run_or_record(s, std::move(node));
}

cudaError_t submit_host(cudaStream_t s, std::function<void()> op, cudaGraphNodeType type) {
  CUgraphNode_st node;
  node.type = type;
  node.host = std::move(op);
  return run_or_record(s, std::move(node));
}

}  // namespace emu

unsigned __ballot_sync(unsigned, int pred) {
  using namespace emu;
  Block& b = *g_block;
  const int me = g_fiber->linear, base = me - me % 32, n = static_cast<int>(b.slots.size());
  b.slots[me] = pred != 0;
  warp_barrier();
  unsigned bits = 0;
  for (int i = 0; i < 32 && base + i < n; ++i)  // exited lanes vote 0
    if (b.fibers[base + i].state != State::done && b.slots[base + i]) bits |= 1u << i;
  warp_barrier();
  return bits;
}

// ---- runtime API -----------------------------------------------------------------------------
using emu::fail;
using emu::g_last;

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
  }
  return "unknown error";
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last; }
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "CUDA emulator on the CPU");
  p->totalGlobalMem = emu::kDeviceBytes;
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->multiProcessorCount = 132;  // an H100's, so grids and splits are sized as there
  p->major = 9;
  p->minor = 0;
  p->maxThreadsPerBlock = 1024;
  p->warpSize = 32;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {
  switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = 132; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 * 1024; break;
    case cudaDevAttrSingleToDoublePrecisionPerfRatio: *v = 2; break;
    default: return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  if (emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
  emu::drain_all();
  return cudaSuccess;
}

namespace {
// Device and pinned memory alike: poisoned (undefined on a GPU: a read before any write shows)
// and recorded in its range table, which tells copies what kind of memory they touch.
cudaError_t allocate(void** p, size_t bytes, std::map<const char*, size_t>& ranges) {
  *p = nullptr;
  if (emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
  if (bytes > emu::kDeviceBytes) return fail(cudaErrorMemoryAllocation);
  *p = ::operator new(std::max<size_t>(bytes, 1), std::align_val_t{256}, std::nothrow);
  if (!*p) return fail(cudaErrorMemoryAllocation);
  std::memset(*p, emu::kPoison, bytes);
  ranges[static_cast<const char*>(*p)] = bytes;
  return cudaSuccess;
}
cudaError_t release(void* p, std::map<const char*, size_t>& ranges) {
  emu::drain_all();  // cudaFree and cudaFreeHost wait for the device
  if (p) {
    ranges.erase(static_cast<const char*>(p));
    ::operator delete(p, std::align_val_t{256});
  }
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaMalloc(void** p, size_t bytes) { return allocate(p, bytes, emu::g_device_ranges); }
cudaError_t cudaFree(void* p) { return release(p, emu::g_device_ranges); }
cudaError_t cudaMallocHost(void** p, size_t bytes) { return allocate(p, bytes, emu::g_pinned_ranges); }
cudaError_t cudaFreeHost(void* p) { return release(p, emu::g_pinned_ranges); }
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
  *free_b = emu::kDeviceBytes;
  *total_b = emu::kDeviceBytes;
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (emu::capture_forbids()) return cudaErrorStreamCaptureUnsupported;
  emu::drain_all();  // on the legacy default stream, and synchronous
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  CUstream_st* st = emu::stream_of(s);
  const bool dst_host = !emu::in_ranges(emu::g_device_ranges, dst), src_host = !emu::in_ranges(emu::g_device_ranges, src);
  if (st->capturing) {
    if (dst_host || src_host || kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToHost) {
      // Legal in a capture on a GPU, but the backend never does it inside a step: say so loudly.
      std::fprintf(stderr, "cuda emulator: a host copy inside a stream capture\n");
    }
    return emu::submit_host(s, [=] { if (bytes) std::memmove(dst, src, bytes); }, cudaGraphNodeTypeMemcpy);
  }
  if (!bytes) return cudaSuccess;
  if (dst_host && src_host) {  // host to host: synchronous
    emu::drain_stream(st, st->last);
    std::memmove(dst, src, bytes);
    return cudaSuccess;
  }
  if (src_host && !emu::in_ranges(emu::g_pinned_ranges, src)) {
    // From pageable memory the runtime stages the source at the call: the caller may reuse it.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    emu::enqueue(st, [=] { std::memmove(dst, staged->data(), bytes); });
    return cudaSuccess;
  }
  const uint64_t serial = emu::enqueue(st, [=] { std::memmove(dst, src, bytes); });
  // To pageable memory the call returns once the copy is done.
  if (dst_host && !emu::in_ranges(emu::g_pinned_ranges, dst)) emu::drain_stream(st, serial);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t bytes) {
  emu::drain_all();
  std::memset(p, v, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t bytes, cudaStream_t s) {
  return emu::submit_host(s, [=] { std::memset(p, v, bytes); }, cudaGraphNodeTypeMemset);
}
cudaError_t cudaStreamCreate(cudaStream_t* s) {
  *s = new CUstream_st;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  const cudaError_t e = cudaStreamCreate(s);
  if (e == cudaSuccess) (*s)->blocking = (flags & cudaStreamNonBlocking) == 0;
  return e;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s) emu::drain_stream(s, s->last);  // its queued work still runs
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (emu::stream_of(s)->capturing) {
    emu::stream_of(s)->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  emu::drain_stream(emu::stream_of(s), emu::stream_of(s)->last);
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (e && e->stream) emu::drain_stream(e->stream, e->serial);  // a pending record still runs
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  CUstream_st* st = emu::stream_of(s);
  if (st->capturing) {  // a node of the capture: what a stream waiting on it will depend on
    e->capture_graph = st->graph;
    e->capture_tail = st->tail;
    return cudaSuccess;
  }
  e->capture_graph = nullptr;
  e->stream = st;
  e->done = false;
  e->serial = emu::enqueue(emu::stream_of(s), [e] {
    e->t = std::chrono::steady_clock::now();
    e->done = true;
  });
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  CUstream_st* st = emu::stream_of(s);
  CUgraph_st* g = nullptr;  // the event's capture, if it is still going on
  for (CUstream_st* c : emu::g_capture_streams)
    if (c->graph == e->capture_graph) g = e->capture_graph;
  if (g) {
    if (st->capturing && st->graph != g) return fail(cudaErrorStreamCaptureIsolation);
    if (!st->capturing) {  // the stream joins the capture (a fork)
      st->capturing = true;
      st->invalidated = false;
      st->origin = false;
      st->graph = g;
      st->tail.clear();
      emu::g_capture_streams.push_back(st);
    }
    for (const size_t i : e->capture_tail)
      if (std::find(st->tail.begin(), st->tail.end(), i) == st->tail.end()) st->tail.push_back(i);
    return cudaSuccess;
  }
  if (st->capturing) {  // an event from outside the capture
    st->invalidated = true;
    return fail(cudaErrorStreamCaptureIsolation);
  }
  // The stream's later work follows the record (as it stands now: a later record is not waited for).
  if (e->stream && !e->done) {
    const uint64_t record = e->serial;
    emu::enqueue(st, [record] { emu::run_queued(record); });
  }
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (e->stream) emu::drain_stream(e->stream, e->serial);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a->done || !b->done) return cudaErrorNotReady;  // a record that has not run yet
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void* f) {
  *a = cudaFuncAttributes{};
  a->sharedSizeBytes = emu::static_smem_of(f);
  a->maxDynamicSharedSizeBytes = static_cast<int>(emu::dynamic_smem_limit(f));
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* f, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) + emu::static_smem_of(f) > emu::kSmemOptin)
    return fail(cudaErrorInvalidValue);
  emu::g_smem_limits[f] = static_cast<size_t>(value);
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  CUstream_st* st = emu::stream_of(s);
  if (st->capturing) return fail(cudaErrorIllegalState);
  st->capturing = true;
  st->invalidated = false;
  st->origin = true;
  st->graph = new CUgraph_st;
  st->tail.clear();
  emu::g_capture_streams.push_back(st);
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  CUstream_st* st = emu::stream_of(s);
  *g = nullptr;
  if (!st->capturing || !st->origin) return fail(cudaErrorIllegalState);
  CUgraph_st* graph = st->graph;
  // Every stream the capture forked to must have been joined back: each node must lead to the
  // origin stream's last ones.
  std::vector<char> reach(graph->nodes.size(), 0);
  std::vector<size_t> todo = st->tail;
  while (!todo.empty()) {
    const size_t i = todo.back();
    todo.pop_back();
    if (reach[i]) continue;
    reach[i] = 1;
    for (const size_t d : graph->nodes[i]->deps) todo.push_back(d);
  }
  const bool joined = std::find(reach.begin(), reach.end(), 0) == reach.end();
  bool invalidated = false;
  auto& v = emu::g_capture_streams;
  for (CUstream_st* c : v)
    if (c->graph == graph) {
      invalidated = invalidated || c->invalidated;
      c->capturing = false;
      c->origin = false;
      c->graph = nullptr;
      c->tail.clear();
    }
  v.erase(std::remove_if(v.begin(), v.end(), [](CUstream_st* c) { return !c->capturing; }), v.end());
  if (invalidated || !joined) {
    delete graph;
    return fail(invalidated ? cudaErrorStreamCaptureInvalidated : cudaErrorStreamCaptureUnjoined);
  }
  *g = graph;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  const CUstream_st* st = emu::stream_of(s);
  *status = !st->capturing ? cudaStreamCaptureStatusNone
            : st->invalidated ? cudaStreamCaptureStatusInvalidated
                              : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphCreate(cudaGraph_t* g, unsigned) {
  *g = new CUgraph_st;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete g;
  return cudaSuccess;
}
cudaError_t cudaGraphGetRootNodes(cudaGraph_t g, cudaGraphNode_t* nodes, size_t* n) {
  size_t roots = 0;
  for (const auto& node : g->nodes)
    if (node->deps.empty()) {
      if (nodes && roots < *n) nodes[roots] = node.get();
      ++roots;
    }
  *n = roots;
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t* nodes, size_t* n) {
  if (nodes)
    for (size_t i = 0; i < std::min(*n, g->nodes.size()); ++i) nodes[i] = g->nodes[i].get();
  *n = g->nodes.size();
  return cudaSuccess;
}
// CUDA 13's form (edge data included). An edge d → i for each dependency of node i.
cudaError_t cudaGraphGetEdges(cudaGraph_t g, cudaGraphNode_t* from, cudaGraphNode_t* to, cudaGraphEdgeData* data,
                              size_t* n) {
  if (!g || !n || (from == nullptr) != (to == nullptr) || (data && !from)) return fail(cudaErrorInvalidValue);
  size_t e = 0;
  for (const auto& node : g->nodes)
    for (const size_t d : node->deps) {
      if (from && e < *n) {
        from[e] = g->nodes[d].get();
        to[e] = node.get();
        if (data) data[e] = cudaGraphEdgeData{};
      }
      ++e;
    }
  if (from)
    for (size_t i = e; i < *n; ++i) from[i] = to[i] = nullptr;
  *n = from ? std::min(*n, e) : e;
  return cudaSuccess;
}
cudaError_t cudaGraphNodeGetType(cudaGraphNode_t node, cudaGraphNodeType* t) {
  *t = node->type;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  auto* x = new CUgraphExec_st;
  for (const auto& node : g->nodes) {
    CUgraphNode_st copy = *node;
    if (copy.type == cudaGraphNodeTypeKernel) copy.kernel.params = copy.kernel.copy(node->kernel.params.get());
    x->of[node.get()] = x->nodes.size();
    x->nodes.push_back(std::move(copy));
  }
  *e = x;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  if (emu::stream_of(s)->capturing) return fail(cudaErrorNotSupported);  // the backend never nests
  // The launch runs the graph as it is now: later node updates are for later launches.
  auto nodes = std::make_shared<std::vector<CUgraphNode_st>>(e->nodes);
  for (CUgraphNode_st& node : *nodes)
    if (node.type == cudaGraphNodeTypeKernel) node.kernel.params = node.kernel.copy(node.kernel.params.get());
  emu::enqueue(emu::stream_of(s), [nodes] {
    for (const size_t i : emu::graph_order(*nodes)) {
      CUgraphNode_st& node = (*nodes)[i];
      if (node.type == cudaGraphNodeTypeKernel)
        emu::execute(node.kernel, node.kernel.params.get());
      else
        node.host();
    }
  });
  return cudaSuccess;
}
cudaError_t cudaGraphExecKernelNodeSetParams(cudaGraphExec_t e, cudaGraphNode_t node, const cudaKernelNodeParams* p) {
  auto it = e->of.find(node);
  if (it == e->of.end()) return fail(cudaErrorInvalidValue);
  CUgraphNode_st& n = e->nodes[it->second];
  if (n.type != cudaGraphNodeTypeKernel || p->func != n.kernel.func) return fail(cudaErrorInvalidValue);
  const unsigned threads = p->blockDim.x * p->blockDim.y * p->blockDim.z;
  if (threads == 0 || threads > 1024) return fail(cudaErrorInvalidConfiguration);
  n.kernel.grid = p->gridDim;
  n.kernel.block = p->blockDim;
  if (p->sharedMemBytes > emu::dynamic_smem_limit(p->func)) return fail(cudaErrorInvalidValue);
  n.kernel.smem = p->sharedMemBytes;
  n.kernel.set_params(n.kernel.params.get(), p->kernelParams);
  return cudaSuccess;
}

// ---- cuBLAS ----------------------------------------------------------------------------------
cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
  h->math = m;
  return CUBLAS_STATUS_SUCCESS;
}

namespace {
// A float with its mantissa rounded to `bits` bits (nearest, ties to even), as tensor cores
// take their inputs: 10 for TF32, 7 for BF16 (23 = unchanged).
float round_mantissa(float x, int bits) {
  if (bits >= 23 || !std::isfinite(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const int drop = 23 - bits;
  const uint32_t half = 1u << (drop - 1), lsb = (u >> drop) & 1u;
  u = (u + half - 1 + lsb) & ~((1u << drop) - 1);
  std::memcpy(&x, &u, 4);
  return x;
}

// Column-major C = alpha·op(A)·op(B) + beta·C, inputs rounded to `bits` mantissa bits, summed in
// double (cuBLAS's own order and rounding are not imitated: tests compare with tolerances).
void gemm_cm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float* a, int lda,
             const float* b, int ldb, float beta, float* c, int ldc, int bits) {
  // op(A) by rows and op(B) by columns, rounded once and widened: contiguous dot products.
  std::vector<double> ar(static_cast<size_t>(m) * k), bc(static_cast<size_t>(n) * k);
  for (int i = 0; i < m; ++i)
    for (int p = 0; p < k; ++p)
      ar[static_cast<size_t>(i) * k + p] = round_mantissa(
          ta == CUBLAS_OP_N ? a[i + static_cast<int64_t>(p) * lda] : a[p + static_cast<int64_t>(i) * lda], bits);
  for (int j = 0; j < n; ++j)
    for (int p = 0; p < k; ++p)
      bc[static_cast<size_t>(j) * k + p] = round_mantissa(
          tb == CUBLAS_OP_N ? b[p + static_cast<int64_t>(j) * ldb] : b[j + static_cast<int64_t>(p) * ldb], bits);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      const double* x = ar.data() + static_cast<size_t>(i) * k;
      const double* y = bc.data() + static_cast<size_t>(j) * k;
      double s = 0;
      for (int p = 0; p < k; ++p) s += x[p] * y[p];
      float& out = c[i + static_cast<int64_t>(j) * ldc];
      out = static_cast<float>(alpha * s + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * out));
    }
}
}  // namespace

static cublasStatus_t gemm_submit(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* alpha, const float* a, int lda, const float* b, int ldb,
                                  const float* beta, float* c, int ldc, int bits) {
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *alpha, be = *beta;  // host pointers: read at the call, as cuBLAS does
  emu::submit_host(h->stream, [=] { gemm_cm(ta, tb, m, n, k, al, a, lda, b, ldb, be, c, ldc, bits); },
                   cudaGraphNodeTypeHost);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* a, int lda, const float* b, int ldb, const float* beta,
                           float* c, int ldc) {
  return gemm_submit(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, h->math == CUBLAS_TF32_TENSOR_OP_MATH ? 10 : 23);
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* a, cudaDataType at, int lda, const void* b, cudaDataType bt,
                            int ldb, const void* beta, void* c, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  if (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  const int bits = compute == CUBLAS_COMPUTE_32F_FAST_16BF ? 7
                   : compute == CUBLAS_COMPUTE_32F_FAST_TF32 || h->math == CUBLAS_TF32_TENSOR_OP_MATH ? 10
                                                                                                     : 23;
  return gemm_submit(h, ta, tb, m, n, k, static_cast<const float*>(alpha), static_cast<const float*>(a), lda,
                     static_cast<const float*>(b), ldb, static_cast<const float*>(beta), static_cast<float*>(c), ldc, bits);
}
