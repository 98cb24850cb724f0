// SPDX-License-Identifier: Apache-2.0
// Hands events from other threads (Paho's callback threads, the ingest commit) to the libuv
// loop thread, which owns all gateway state. uv_async_send coalesces, so each wake-up drains
// everything queued so far, in the order it was posted.
#pragma once

#include <uv.h>

#include <functional>
#include <mutex>
#include <utility>
#include <vector>

namespace egw {

template <class T>
class mailbox {
public:
    using handler = std::function<void(std::vector<T>&)>;

    // The handler runs on the loop thread with every event posted since the last run.
    mailbox(uv_loop_t* loop, handler h) : handler_(std::move(h)) {
        async_ = new uv_async_t;
        async_->data = this;
        uv_async_init(loop, async_, [](uv_async_t* a) { static_cast<mailbox*>(a->data)->drain(); });
    }
    ~mailbox() { close(); }
    mailbox(const mailbox&) = delete;
    mailbox& operator=(const mailbox&) = delete;

    // Any thread. Never blocks for long: the lock is held only to append. After close() the
    // item is dropped: a late Paho callback during shutdown has nobody left to tell.
    void post(T&& item) {
        std::lock_guard lock(mu_);
        if (!async_) return;
        items_.push_back(std::move(item));
        uv_async_send(async_);
    }

    // Any thread: queues without waking the loop; the item is handled with the next wake-up
    // or drain(). For high-rate events whose handling can wait a moment (acknowledgements):
    // waking the loop thread for each costs two context switches.
    void post_quiet(T&& item) {
        std::lock_guard lock(mu_);
        if (!async_) return;
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
        std::lock_guard lock(mu_);
        if (!async_) return;
        async_->data = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(async_),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
        async_ = nullptr;
    }

private:
    handler handler_;
    uv_async_t* async_ = nullptr;
    std::mutex mu_;
    std::vector<T> items_;
};

}  // namespace egw
