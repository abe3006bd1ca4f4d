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

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

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
