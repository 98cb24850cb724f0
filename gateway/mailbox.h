// SPDX-License-Identifier: Apache-2.0
// Hands events from other threads (Paho's callback threads, the ingest commit) to the libuv
// loop thread, which owns all gateway state. Wake-ups coalesce, so each one drains everything
// queued so far, in the order it was posted. The wake-up is a loop_wakeup, not a uv_async_t:
// see loop_wakeup.h for the loop stall that avoids.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "gateway/loop_wakeup.h"

namespace egw {

template <class T>
class mailbox {
public:
    using handler = std::function<void(std::vector<T>&)>;

    // The handler runs on the loop thread with every event posted since the last run.
    mailbox(uv_loop_t* loop, handler h)
        : handler_(std::move(h)), wake_(std::make_unique<loop_wakeup>(loop, [this] { drain(); })) {}
    ~mailbox() { close(); }
    mailbox(const mailbox&) = delete;
    mailbox& operator=(const mailbox&) = delete;

    // Any thread. Never blocks for long: the lock is held only to append. After close() the
    // item is dropped: a late Paho callback during shutdown has nobody left to tell.
    void post(T&& item) {
        std::lock_guard lock(mu_);
        if (!wake_) return;
        items_.push_back(std::move(item));
        wake_->notify();
    }

    // Any thread: queues without waking the loop; the item is handled with the next wake-up
    // or drain(). For high-rate events whose handling can wait a moment (acknowledgements):
    // waking the loop thread for each costs two context switches.
    void post_quiet(T&& item) {
        std::lock_guard lock(mu_);
        if (!wake_) return;
        items_.push_back(std::move(item));
    }

    // Loop thread: processes whatever is queued now (a timer, and shutdown).
    void drain() {
        std::vector<T> batch;
        {
            std::lock_guard lock(mu_);
            batch.swap(items_);
        }
        if (!batch.empty()) handler_(batch);
    }

    // Loop thread. The handle's memory is freed in the close callback, as libuv requires.
    void close() {
        std::unique_ptr<loop_wakeup> w;
        {
            std::lock_guard lock(mu_);
            w = std::move(wake_);
        }
        if (w) w->close();
    }

private:
    handler handler_;
    std::mutex mu_;  // items_ and wake_ (null once closed)
    std::vector<T> items_;
    std::unique_ptr<loop_wakeup> wake_;
};

}  // namespace egw
