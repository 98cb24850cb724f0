// SPDX-License-Identifier: Apache-2.0
#include "gateway/work_pool.h"

#include <pthread.h>
#include <sched.h>

#include <exception>

#include "gateway/log.h"

namespace egw {

work_pool::work_pool(uv_loop_t* loop, unsigned threads)
    : wake_(std::make_unique<loop_wakeup>(loop, [this] { on_wake(); })) {
    wake_->keep_loop_alive(false);
    threads_.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { worker(); });
}

work_pool::~work_pool() { close(); }

void work_pool::submit(std::function<void()> run, std::function<void()> done) {
    if (++in_flight_ == 1 && wake_) wake_->keep_loop_alive(true);
    {
        std::lock_guard lock(mu_);
        todo_.push_back({std::move(run), std::move(done)});
    }
    cv_.notify_one();
}

void work_pool::worker() {
    // Commits and plugin calls are throughput work: SCHED_BATCH keeps the threads' fair share
    // but a wake-up of one of them (a job submitted, a child's answer) does not preempt the
    // loop thread. Best effort: without it the pool works the same, with more loop lag.
    sched_param batch{};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
    for (;;) {
        item it;
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [this] { return stopping_ || !todo_.empty(); });
            if (todo_.empty()) return;  // stopping, and nothing left to run
            it = std::move(todo_.front());
            todo_.pop_front();
        }
        try {
            it.run();
        } catch (const std::exception& e) {
            log::get("gateway")->error("bug: a pool job threw: {}", e.what());
        } catch (...) {
            log::get("gateway")->error("bug: a pool job threw");
        }
        it.run = nullptr;  // what it captured goes on this thread, not later on the loop
        {
            std::lock_guard lock(mu_);
            if (stopping_) continue;  // close() drops the done callbacks
            finished_.push_back(std::move(it));
        }
        wake_->notify();
    }
}

void work_pool::on_wake() {
    std::vector<item> batch;
    {
        std::lock_guard lock(mu_);
        batch.swap(finished_);
    }
    for (item& it : batch) {
        --in_flight_;
        it.done();
    }
    if (in_flight_ == 0 && wake_) wake_->keep_loop_alive(false);
}

void work_pool::close() {
    if (!wake_) return;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
    finished_.clear();
    wake_->close();
    wake_.reset();
}

}  // namespace egw
