// SPDX-License-Identifier: Apache-2.0
// Worker threads for the loop's blocking work on the data path (the plugin stage's batches and
// commits, acknowledgement commits, WAL maintenance): uv_queue_work's contract, with the
// completion reported through a loop_wakeup instead of libuv's internal uv_async_t, whose
// sender-side spin stalls the loop thread on a busy machine (see loop_wakeup.h).
//
// Threads. submit() and close() on the loop thread. `run` on one of the pool's threads, `done`
// on the loop thread afterwards, in the order the runs finished. While work is queued or
// running, the pool keeps uv_run going, as a pending uv_work_t does; idle, it does not.
// close() lets the threads finish the work already queued, joins them, and drops the `done`
// callbacks that have not run. A `run` must not throw (it is wrapped: an exception escaping it
// is logged and counted as a bug, and `done` still runs). The threads live as long as the
// pool, which matters for isolation children tied to them by PR_SET_PDEATHSIG.
#pragma once

#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gateway/loop_wakeup.h"

namespace egw {

class work_pool {
public:
    // libuv's default pool size; the gateway has at most one job of each kind in flight.
    static constexpr unsigned default_threads = 4;

    work_pool(uv_loop_t* loop, unsigned threads = default_threads);
    ~work_pool();
    work_pool(const work_pool&) = delete;
    work_pool& operator=(const work_pool&) = delete;

    void submit(std::function<void()> run, std::function<void()> done);
    void close();
    size_t in_flight() const { return in_flight_; }  // loop thread

private:
    struct item {
        std::function<void()> run, done;
    };
    void worker();
    void on_wake();

    std::unique_ptr<loop_wakeup> wake_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<item> todo_;       // mu_
    std::vector<item> finished_;  // mu_
    bool stopping_ = false;       // mu_
    std::vector<std::thread> threads_;
    size_t in_flight_ = 0;  // loop thread: submitted, `done` not yet run
};

}  // namespace egw
