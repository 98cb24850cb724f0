// SPDX-License-Identifier: Apache-2.0
// work_pool and the mailbox over loop_wakeup, on a real libuv loop and real threads.
#include "gateway/work_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "gateway/mailbox.h"

namespace egw {
namespace {

TEST(work_pool, RunsOnItsThreadsAndReportsOnTheLoopWhichItKeepsAliveOnlyWhileBusy) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        work_pool pool(&loop, 3);
        const auto loop_thread = std::this_thread::get_id();
        std::atomic<int> ran{0};
        int done = 0;
        for (int i = 0; i < 200; ++i) {
            pool.submit(
                [&] {
                    EXPECT_NE(std::this_thread::get_id(), loop_thread);
                    ++ran;
                },
                [&] {
                    EXPECT_EQ(std::this_thread::get_id(), loop_thread);
                    ++done;
                });
        }
        // Returns only once every `done` ran: pending work keeps the loop alive, idle does not.
        uv_run(&loop, UV_RUN_DEFAULT);
        EXPECT_EQ(ran.load(), 200);
        EXPECT_EQ(done, 200);
        EXPECT_EQ(pool.in_flight(), 0u);
        // A `done` may submit more work.
        int chained = 0;
        pool.submit([] {}, [&] { pool.submit([] {}, [&] { ++chained; }); });
        uv_run(&loop, UV_RUN_DEFAULT);
        EXPECT_EQ(chained, 1);
        pool.close();
    }
    uv_run(&loop, UV_RUN_DEFAULT);  // close callbacks
    EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(mailbox, DeliversEverythingPostedFromManyThreadsInEachThreadsOrder) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    constexpr int threads = 4, per_thread = 20000;
    std::vector<int> next(threads, 0);
    int got = 0;
    bool in_order = true;
    {
        mailbox<std::pair<int, int>> mb(&loop, [&](std::vector<std::pair<int, int>>& batch) {
            for (auto [t, i] : batch) {
                in_order = in_order && next[t] == i;
                next[t] = i + 1;
                ++got;
            }
        });
        std::vector<std::thread> senders;
        for (int t = 0; t < threads; ++t) {
            senders.emplace_back([&mb, t] {
                for (int i = 0; i < per_thread; ++i) mb.post({t, i});
            });
        }
        while (got < threads * per_thread) uv_run(&loop, UV_RUN_ONCE);
        for (auto& s : senders) s.join();
        mb.close();
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_TRUE(in_order);
    EXPECT_EQ(got, threads * per_thread);
    EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace egw
