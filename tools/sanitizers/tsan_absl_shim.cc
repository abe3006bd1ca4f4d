// Happens-before annotations for abseil's synchronisation primitives, for
// the TSan build against Debian's uninstrumented abseil.
//
// TSan learns about synchronisation from instrumented code and from the
// libc functions it intercepts (pthread_mutex_*, ...). absl::Mutex is
// neither: it lives in libabsl_synchronization.so, built without TSan, and
// waits with raw futex calls. gRPC (1.51) synchronises with absl::Mutex too.
// So, unannotated, every access guarded by an absl::Mutex is reported as a
// data race.
//
// This library defines the out-of-line members of absl::Mutex, CondVar and
// Notification. Linked into every executable ahead of abseil, its
// definitions preempt abseil's for every caller (our code, gRPC, and abseil
// itself, which calls them through its PLT). Each forwards to abseil's own
// definition (dlsym(RTLD_NEXT)) and adds the happens-before edges:
//   unlock:    release on the mutex        (before it is unlocked)
//   lock:      acquire from the mutex      (after it is locked)
// Readers release on a second address (mutex + 1) that only writers acquire
// from, so two readers are not ordered with each other. A wait that gives
// up the mutex and takes it again (Await, CondVar::Wait) releases before
// and acquires after. These are plain happens-before edges, not TSan mutex
// annotations: TSan does not model lock ownership for these mutexes, so it
// cannot report lock-order inversions on them, and it reports no false
// "unlock of an unlocked mutex" when abseil drops and retakes a lock
// internally.

//
// gRPC: the same library also gives TSan the one edge gRPC's core (built
// without TSan, lock-free between its threads) hides from it: starting a
// batch of operations happens before the completion of that batch is seen.
//   grpc_call_start_batch, grpc_server_request_[registered_]call:
//       release on the tag (after everything the caller prepared)
//   grpc_completion_queue_next / _pluck returning a tag: acquire on it
//   a callback completion queue's functor (the tag gRPC runs on
//   completion; grpcpp's callback API): the functor's run function is
//   swapped for a trampoline that acquires on the tag, then runs it.
//   grpc::internal::ServerCallbackCall::ScheduleOnDone / CallOnCancel: a
//       server call's reference count drops to zero (OnDone) or its cancel
//       conditions are met (OnCancel) partly inside libgrpc++, whose atomic
//       decrements TSan does not see; acquire on the counters there.
// Without this, every hand-off of a call's objects from the thread that
// started an operation to the thread that completes it (a response message,
// grpcpp's call op sets, a client callback chain) was reported as a race.

#include <dlfcn.h>
#include <grpc/grpc.h>
#include <grpcpp/support/server_callback.h>
#include <sanitizer/tsan_interface.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

// abseil's definition of `symbol`, the next one after ours.
template <typename Fn>
Fn Real(const char* symbol) {
  void* fn = dlsym(RTLD_NEXT, symbol);
  if (fn == nullptr) {
    std::fprintf(stderr,
                 "tsan_absl_shim: %s not found: is this Debian's abseil "
                 "20220623 (inline namespace debian3)?\n",
                 symbol);
    std::abort();
  }
  return reinterpret_cast<Fn>(fn);
}

void* ReaderSync(const void* mu) {
  return static_cast<char*>(const_cast<void*>(mu)) + 1;
}

void AcquireWriter(const void* mu) {
  __tsan_acquire(const_cast<void*>(mu));
  __tsan_acquire(ReaderSync(mu));
}
void AcquireReader(const void* mu) { __tsan_acquire(const_cast<void*>(mu)); }
void ReleaseWriter(const void* mu) { __tsan_release(const_cast<void*>(mu)); }
void ReleaseReader(const void* mu) { __tsan_release(ReaderSync(mu)); }

// A Condition is evaluated while its mutex is held, but inside abseil: by
// the waiting thread after abseil retook the lock for it, or by another
// thread while it unlocks the mutex (after that thread's release). Either
// way outside the edges above. So each condition is wrapped: acquire from
// the mutex before it runs, release to it after.
struct WrappedCondition {
  const absl::Mutex* mu;
  const absl::Condition* cond;
};

bool EvalWrapped(WrappedCondition* w) {
  AcquireWriter(w->mu);
  const bool met = w->cond->Eval();
  ReleaseWriter(w->mu);
  return met;
}

#define ABSL_SYM(name) "_ZN4absl7debian3" name
#define ABSL_CONST_SYM(name) "_ZNK4absl7debian3" name

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using Cond = const Condition&;

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>(ABSL_SYM("5Mutex4LockEv"));
  real(this);
  AcquireWriter(this);
}

void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>(ABSL_SYM("5Mutex6UnlockEv"));
  ReleaseWriter(this);
  real(this);
}

bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>(ABSL_SYM("5Mutex7TryLockEv"));
  const bool locked = real(this);
  if (locked) AcquireWriter(this);
  return locked;
}

void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>(ABSL_SYM("5Mutex10ReaderLockEv"));
  real(this);
  AcquireReader(this);
}

void Mutex::ReaderUnlock() {
  static auto real = Real<void (*)(Mutex*)>(ABSL_SYM("5Mutex12ReaderUnlockEv"));
  ReleaseReader(this);
  real(this);
}

bool Mutex::ReaderTryLock() {
  static auto real =
      Real<bool (*)(Mutex*)>(ABSL_SYM("5Mutex13ReaderTryLockEv"));
  const bool locked = real(this);
  if (locked) AcquireReader(this);
  return locked;
}

void Mutex::LockWhen(Cond cond) {
  static auto real = Real<void (*)(Mutex*, Cond)>(
      ABSL_SYM("5Mutex8LockWhenERKNS0_9ConditionE"));
  WrappedCondition wrapped{this, &cond};
  real(this, Condition(&EvalWrapped, &wrapped));
  AcquireWriter(this);
}

void Mutex::ReaderLockWhen(Cond cond) {
  static auto real = Real<void (*)(Mutex*, Cond)>(
      ABSL_SYM("5Mutex14ReaderLockWhenERKNS0_9ConditionE"));
  WrappedCondition wrapped{this, &cond};
  real(this, Condition(&EvalWrapped, &wrapped));
  AcquireReader(this);
}

// The timed forms take the lock whatever they return.
bool Mutex::LockWhenWithTimeout(Cond cond, Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, Cond, Duration)>(
      ABSL_SYM("5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  WrappedCondition wrapped{this, &cond};
  const bool met = real(this, Condition(&EvalWrapped, &wrapped), timeout);
  AcquireWriter(this);
  return met;
}

bool Mutex::LockWhenWithDeadline(Cond cond, Time deadline) {
  static auto real = Real<bool (*)(Mutex*, Cond, Time)>(
      ABSL_SYM("5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  WrappedCondition wrapped{this, &cond};
  const bool met = real(this, Condition(&EvalWrapped, &wrapped), deadline);
  AcquireWriter(this);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(Cond cond, Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, Cond, Duration)>(ABSL_SYM(
      "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  WrappedCondition wrapped{this, &cond};
  const bool met = real(this, Condition(&EvalWrapped, &wrapped), timeout);
  AcquireReader(this);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(Cond cond, Time deadline) {
  static auto real = Real<bool (*)(Mutex*, Cond, Time)>(ABSL_SYM(
      "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  WrappedCondition wrapped{this, &cond};
  const bool met = real(this, Condition(&EvalWrapped, &wrapped), deadline);
  AcquireReader(this);
  return met;
}

// Await may drop the mutex and take it again (another thread may lock it in
// between): release before, acquire after. Held as a writer is the common
// case; for a reader the extra edges only add ordering.
void Mutex::Await(Cond cond) {
  static auto real =
      Real<void (*)(Mutex*, Cond)>(ABSL_SYM("5Mutex5AwaitERKNS0_9ConditionE"));
  ReleaseWriter(this);
  WrappedCondition wrapped{this, &cond};
  real(this, Condition(&EvalWrapped, &wrapped));
  AcquireWriter(this);
}

bool Mutex::AwaitWithTimeout(Cond cond, Duration timeout) {
  static auto real = Real<bool (*)(Mutex*, Cond, Duration)>(
      ABSL_SYM("5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE"));
  ReleaseWriter(this);
  WrappedCondition wrapped{this, &cond};
  const bool met = real(this, Condition(&EvalWrapped, &wrapped), timeout);
  AcquireWriter(this);
  return met;
}

bool Mutex::AwaitWithDeadline(Cond cond, Time deadline) {
  static auto real = Real<bool (*)(Mutex*, Cond, Time)>(
      ABSL_SYM("5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE"));
  ReleaseWriter(this);
  WrappedCondition wrapped{this, &cond};
  const bool met = real(this, Condition(&EvalWrapped, &wrapped), deadline);
  AcquireWriter(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  static auto real =
      Real<void (*)(CondVar*, Mutex*)>(ABSL_SYM("7CondVar4WaitEPNS0_5MutexE"));
  ReleaseWriter(mu);
  real(this, mu);
  AcquireWriter(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, Duration)>(
      ABSL_SYM("7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE"));
  ReleaseWriter(mu);
  const bool timed_out = real(this, mu, timeout);
  AcquireWriter(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, Time)>(
      ABSL_SYM("7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE"));
  ReleaseWriter(mu);
  const bool timed_out = real(this, mu, deadline);
  AcquireWriter(mu);
  return timed_out;
}

// Notify happens before every wait that sees it.
void Notification::Notify() {
  static auto real =
      Real<void (*)(Notification*)>(ABSL_SYM("12Notification6NotifyEv"));
  __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  static auto real = Real<void (*)(const Notification*)>(
      ABSL_CONST_SYM("12Notification19WaitForNotificationEv"));
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static auto real = Real<bool (*)(const Notification*, Duration)>(
      ABSL_CONST_SYM("12Notification30WaitForNotificationWithTimeoutENS0_"
                     "8DurationE"));
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static auto real = Real<bool (*)(const Notification*, Time)>(
      ABSL_CONST_SYM("12Notification31WaitForNotificationWithDeadlineENS0_"
                     "4TimeE"));
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl

// ---------------------------------------------------------------------------
// gRPC batches.

namespace {

// The bookkeeping below must not add edges (or reports) of its own between
// the threads that start batches: it is compiled without TSan.
#define NO_TSAN __attribute__((no_sanitize("thread")))

// Is `p` in an executable mapping? A callback queue's tag is a functor whose
// first word is its run function (code); any other queue's tag is a
// grpcpp CompletionQueueTag whose first word is a vtable pointer (read-only
// data). The answer for a mapping never changes while it is mapped, so the
// ranges are read from /proc/self/maps once and again only for an address
// in none of them (a library loaded since).
struct Range {
  uintptr_t begin, end;
  bool exec;
};
constexpr int kMaxRanges = 4096;
struct Ranges {
  int n = 0;
  Range r[kMaxRanges];
};
std::atomic<Ranges*> g_ranges{nullptr};

NO_TSAN Ranges* ReadMaps() {
  auto* ranges = new Ranges;  // never freed: readers may still hold one
  std::FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return ranges;
  char line[512];
  while (ranges->n < kMaxRanges && std::fgets(line, sizeof(line), f)) {
    unsigned long begin, end;
    char perms[5];
    if (std::sscanf(line, "%lx-%lx %4s", &begin, &end, perms) == 3) {
      ranges->r[ranges->n++] = {begin, end, perms[2] == 'x'};
    }
  }
  std::fclose(f);
  return ranges;
}

// 1: executable, 0: mapped but not executable, -1: not mapped.
NO_TSAN int Classify(const Ranges* ranges, uintptr_t p) {
  if (ranges == nullptr) return -1;
  for (int i = 0; i < ranges->n; ++i) {
    if (p >= ranges->r[i].begin && p < ranges->r[i].end) {
      return ranges->r[i].exec ? 1 : 0;
    }
  }
  return -1;
}

NO_TSAN bool IsCode(uintptr_t p) {
  int c = Classify(g_ranges.load(std::memory_order_acquire), p);
  if (c < 0) {
    g_ranges.store(ReadMaps(), std::memory_order_release);
    c = Classify(g_ranges.load(std::memory_order_acquire), p);
  }
  return c == 1;
}

// The run functions seen, each with its trampoline (there are only a few:
// grpcpp's CallbackWithSuccessTag, CallbackWithStatusTag, ...).
using RunFn = void (*)(grpc_completion_queue_functor*, int);
constexpr int kMaxRunFns = 32;
std::atomic<RunFn> g_run_fns[kMaxRunFns];

template <int I>
void Trampoline(grpc_completion_queue_functor* functor, int ok) {
  __tsan_acquire(functor);
  g_run_fns[I].load(std::memory_order_acquire)(functor, ok);
}

template <int... I>
constexpr std::array<RunFn, sizeof...(I)> MakeTrampolines(
    std::integer_sequence<int, I...>) {
  return {&Trampoline<I>...};
}
constexpr auto kTrampolines =
    MakeTrampolines(std::make_integer_sequence<int, kMaxRunFns>());

NO_TSAN bool IsTrampoline(RunFn fn) {
  for (RunFn t : kTrampolines) {
    if (fn == t) return true;
  }
  return false;
}

// Index of `fn` in g_run_fns, adding it if new; -1 when the table is full.
NO_TSAN int RunFnIndex(RunFn fn) {
  for (int i = 0; i < kMaxRunFns; ++i) {
    RunFn seen = g_run_fns[i].load(std::memory_order_acquire);
    if (seen == fn) return i;
    if (seen == nullptr) {
      RunFn expected = nullptr;
      if (g_run_fns[i].compare_exchange_strong(expected, fn) ||
          expected == fn) {
        return i;
      }
    }
  }
  return -1;
}

// If `tag` is a callback queue's functor, routes its completion through a
// trampoline.
NO_TSAN void WrapFunctor(void* tag) {
  auto* functor = static_cast<grpc_completion_queue_functor*>(tag);
  uintptr_t first;
  std::memcpy(&first, tag, sizeof(first));
  if (IsCode(first)) {
    const RunFn run = functor->functor_run;
    if (!IsTrampoline(run)) {
      const int i = RunFnIndex(run);
      if (i >= 0) functor->functor_run = kTrampolines[i];
    }
  }
}

// Before a batch with `tag` starts: release on the tag.
void BeforeStart(void* tag) {
  if (tag == nullptr) return;
  WrapFunctor(tag);
  __tsan_release(tag);
}

}  // namespace

extern "C" {

grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops,
                                      size_t nops, void* tag, void* reserved) {
  static auto real =
      Real<grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*,
                               void*)>("grpc_call_start_batch");
  BeforeStart(tag);
  return real(call, ops, nops, tag, reserved);
}

grpc_call_error grpc_server_request_call(
    grpc_server* server, grpc_call** call, grpc_call_details* details,
    grpc_metadata_array* request_metadata,
    grpc_completion_queue* cq_bound_to_call,
    grpc_completion_queue* cq_for_notification, void* tag_new) {
  static auto real = Real<grpc_call_error (*)(
      grpc_server*, grpc_call**, grpc_call_details*, grpc_metadata_array*,
      grpc_completion_queue*, grpc_completion_queue*, void*)>(
      "grpc_server_request_call");
  BeforeStart(tag_new);
  return real(server, call, details, request_metadata, cq_bound_to_call,
              cq_for_notification, tag_new);
}

grpc_call_error grpc_server_request_registered_call(
    grpc_server* server, void* registered_method, grpc_call** call,
    gpr_timespec* deadline, grpc_metadata_array* request_metadata,
    grpc_byte_buffer** optional_payload,
    grpc_completion_queue* cq_bound_to_call,
    grpc_completion_queue* cq_for_notification, void* tag_new) {
  static auto real = Real<grpc_call_error (*)(
      grpc_server*, void*, grpc_call**, gpr_timespec*, grpc_metadata_array*,
      grpc_byte_buffer**, grpc_completion_queue*, grpc_completion_queue*,
      void*)>("grpc_server_request_registered_call");
  BeforeStart(tag_new);
  return real(server, registered_method, call, deadline, request_metadata,
              optional_payload, cq_bound_to_call, cq_for_notification, tag_new);
}

grpc_event grpc_completion_queue_next(grpc_completion_queue* cq,
                                      gpr_timespec deadline, void* reserved) {
  static auto real =
      Real<grpc_event (*)(grpc_completion_queue*, gpr_timespec, void*)>(
          "grpc_completion_queue_next");
  grpc_event ev = real(cq, deadline, reserved);
  if (ev.type == GRPC_OP_COMPLETE && ev.tag != nullptr) {
    __tsan_acquire(ev.tag);
  }
  return ev;
}

grpc_event grpc_completion_queue_pluck(grpc_completion_queue* cq, void* tag,
                                       gpr_timespec deadline, void* reserved) {
  static auto real =
      Real<grpc_event (*)(grpc_completion_queue*, void*, gpr_timespec, void*)>(
          "grpc_completion_queue_pluck");
  grpc_event ev = real(cq, tag, deadline, reserved);
  if (ev.type == GRPC_OP_COMPLETE && ev.tag != nullptr) {
    __tsan_acquire(ev.tag);
  }
  return ev;
}

}  // extern "C"

// grpcpp's ServerCallbackCall: a vtable pointer, then
// on_cancel_conditions_remaining_ and callbacks_outstanding_ (std::atomic_int
// each), as in gRPC 1.51's server_callback.h.
static_assert(sizeof(grpc::internal::ServerCallbackCall) ==
              sizeof(void*) + 2 * sizeof(std::atomic_int));

namespace {
void AcquireServerCallCounters(void* call) {
  char* base = static_cast<char*>(call) + sizeof(void*);
  __tsan_acquire(base);                            // cancel conditions
  __tsan_acquire(base + sizeof(std::atomic_int));  // callbacks outstanding
}
}  // namespace

namespace grpc::internal {

void ServerCallbackCall::ScheduleOnDone(bool inline_ondone) {
  static auto real = Real<void (*)(ServerCallbackCall*, bool)>(
      "_ZN4grpc8internal18ServerCallbackCall14ScheduleOnDoneEb");
  AcquireServerCallCounters(this);
  real(this, inline_ondone);
}

void ServerCallbackCall::CallOnCancel(ServerReactor* reactor) {
  static auto real = Real<void (*)(ServerCallbackCall*, ServerReactor*)>(
      "_ZN4grpc8internal18ServerCallbackCall12CallOnCancelEPNS0_"
      "13ServerReactorE");
  AcquireServerCallCounters(this);
  real(this, reactor);
}

}  // namespace grpc::internal
