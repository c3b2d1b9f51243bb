// Blocks of a leaf on XLA's intra-op threads.

#ifndef RAMDA_OPTAX_CSRC_PARALLEL_H_
#define RAMDA_OPTAX_CSRC_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>

#include "xla/ffi/api/ffi.h"

namespace ramda_optax {

// Runs body(i) for every i in [0, n) on the calling thread and up to
// pool.num_threads() − 1 of the pool's threads, and returns when all have
// run. A thread claims an index first and only then calls make_body()
// (which allocates its scratch); it then claims indices until none is
// left, each before it runs the one it holds: a body that takes two
// indices, body(i, next), is told the index its thread runs next (−1 for
// none), whose data it may prefetch. As the caller waits for every
// claimed index, make_body and the bodies it makes may refer to the
// caller's locals; a thread that starts after the last claim touches only
// the shared counters.
template <typename MakeBody>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, MakeBody make_body) {
  if (n <= 0) return;
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mutex;
    std::condition_variable finished;
  };
  auto shared = std::make_shared<Shared>();
  MakeBody* make = &make_body;
  auto run = [shared, n, make]() {
    int64_t i = shared->next.fetch_add(1);
    if (i >= n) return;
    auto body = (*make)();
    while (i < n) {
      const int64_t next = shared->next.fetch_add(1);
      if constexpr (std::is_invocable_v<decltype(body)&, int64_t, int64_t>) {
        body(i, next < n ? next : -1);
      } else {
        body(i);
      }
      if (shared->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(shared->mutex);
        shared->finished.notify_all();
      }
      i = next;
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, n - 1);
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule(decltype(run)(run));
  run();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == n; });
}

}  // namespace ramda_optax

#endif  // RAMDA_OPTAX_CSRC_PARALLEL_H_
