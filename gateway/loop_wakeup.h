// SPDX-License-Identifier: Apache-2.0
// Wakes the libuv loop thread from any thread, through an eventfd the loop polls: what
// uv_async_t does, without its stall.
//
// Why not uv_async_t. In libuv 1.44 (Debian 12), uv_async_send marks the handle busy, writes
// the loop's eventfd, then marks it done; the loop, woken by that write, spins and
// sched_yield()s until the sender has marked it done (uv__async_spin). The write is what wakes
// the loop, so on a busy machine the sender is often preempted right there, and the loop
// thread then waits for a thread that is not running: 10-50 ms stalls with 4 cameras on 2
// cores (docs/cameras.md, "The loop's longest stall"; libuv issues 2769 and 2949, fixed in
// libuv 1.45 by pull request 3879). Here the loop never waits for a sender: notify() writes
// only when no wake-up is pending, and the loop clears the flag before it runs the callback,
// so a notify() racing with the callback at worst causes one extra, empty wake-up.
//
// Threads. notify() from any thread, as long as the object is open (the owner guarantees that,
// as mailbox does with its mutex). Everything else on the loop thread. Ownership: the poll
// handle and the eventfd are freed in the handle's close callback, as libuv requires.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

namespace egw {

class loop_wakeup {
public:
    // Throws std::runtime_error when the eventfd or the poll handle cannot be created.
    loop_wakeup(uv_loop_t* loop, std::function<void()> on_wake) : s_(new state) {
        s_->on_wake = std::move(on_wake);
        s_->fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s_->fd < 0) {
            const int e = errno;
            delete s_;
            throw std::runtime_error(std::string("eventfd: ") + std::strerror(e));
        }
        if (int rc = uv_poll_init(loop, &s_->poll, s_->fd); rc != 0) {
            ::close(s_->fd);
            delete s_;
            throw std::runtime_error(std::string("uv_poll_init: ") + uv_strerror(rc));
        }
        s_->poll.data = s_;
        uv_poll_start(&s_->poll, UV_READABLE, [](uv_poll_t* p, int status, int) {
            auto* st = static_cast<state*>(p->data);
            if (status < 0) return;
            uint64_t n = 0;
            while (::read(st->fd, &n, sizeof n) < 0 && errno == EINTR) {
            }
            st->pending.store(false);  // before the callback: see the race note above
            st->on_wake();
        });
    }
    ~loop_wakeup() { close(); }
    loop_wakeup(const loop_wakeup&) = delete;
    loop_wakeup& operator=(const loop_wakeup&) = delete;

    // Any thread, while open. Never blocks (one write(2) of 8 bytes at most).
    void notify() noexcept {
        if (s_->pending.exchange(true)) return;
        const uint64_t one = 1;
        while (::write(s_->fd, &one, sizeof one) < 0 && errno == EINTR) {
        }
    }

    // Loop thread: whether the handle alone keeps uv_run going (uv_ref / uv_unref).
    void keep_loop_alive(bool on) {
        if (!s_) return;
        if (on) {
            uv_ref(reinterpret_cast<uv_handle_t*>(&s_->poll));
        } else {
            uv_unref(reinterpret_cast<uv_handle_t*>(&s_->poll));
        }
    }

    // Loop thread; idempotent. The memory goes in the close callback.
    void close() {
        if (!s_) return;
        uv_poll_stop(&s_->poll);
        uv_close(reinterpret_cast<uv_handle_t*>(&s_->poll), [](uv_handle_t* h) {
            auto* st = static_cast<state*>(h->data);
            ::close(st->fd);
            delete st;
        });
        s_ = nullptr;
    }

private:
    struct state {
        uv_poll_t poll{};
        int fd = -1;
        std::atomic<bool> pending{false};
        std::function<void()> on_wake;
    };
    state* s_;
};

}  // namespace egw
