// SPDX-License-Identifier: Apache-2.0
// Devices and tasks on disk: real SQLite files, next to the real buffer, and a writer process
// killed with SIGKILL mid-stream.
#include "gateway/devices/store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/buffer.h"
#include "tests/support/temp_dir.h"

namespace egw::devices {
namespace {

std::string reg_msg(const std::string& boot, const std::string& type) {
    return json{{"boot", boot},
                {"caps", {{"cores", 2}, {"memory_mb", 1024}, {"arch", "arm64"}}},
                {"tasks", {{{"type", type}, {"max_concurrent", 1}}}}}
        .dump();
}

std::string report(const std::string& task, int attempt, const std::string& state) {
    return json{{"task", task}, {"attempt", attempt}, {"state", state}}.dump();
}

void persist(engine& e, effects& fx, batch& b, time_ms now) {
    for (const auto& id : fx.devices_changed) b.add_device(*e.devices().find(id), now);
    for (const auto& id : fx.tasks_changed) b.add_task(*e.find_task(id));
    fx.clear();
}

// Tasks in every state: queued, dispatched, accepted, running, succeeded, failed (final),
// timed_out (then retried), rejected (then retried), canceled and expired.
void every_state(engine& e, effects& fx, const std::string& p, time_ms now) {
    e.on_register(p + "d1", reg_msg("b1", p + "infer"), now, fx);
    e.on_register(p + "d2", reg_msg("b1", p + "infer"), now, fx);
    e.on_register(p + "d3", reg_msg("b1", p + "infer"), now, fx);
    auto sub = [&](const std::string& id, const std::string& extra = "") {
        e.submit(R"({"task":")" + p + id + R"(","type":")" + p + R"(infer")" + extra + "}", now,
                 fx);
    };
    sub("ok");
    e.on_report(e.find_task(p + "ok")->current()->device, p + "ok",
                report(p + "ok", 1, "succeeded"), now, fx);
    sub("acc");
    e.on_report(e.find_task(p + "acc")->current()->device, p + "acc",
                report(p + "acc", 1, "accepted"), now, fx);
    sub("run");
    e.on_report(e.find_task(p + "run")->current()->device, p + "run",
                report(p + "run", 1, "running"), now, fx);
    sub("disp");  // the third device
    sub("q");     // every device is busy now: queued
    sub("cancel");
    e.cancel(p + "cancel", now, fx);
    sub("gone", R"(,"type":"none","deadline_ms":1)");
    e.tick(now + 1, fx);
}

TEST(devices_store, shares_the_buffers_file_and_restores_everything) {
    test::temp_dir dir;
    std::string path = (dir / "buffer.db").string();
    storage::buffer_options bo;
    bo.path = path;
    storage::buffer buf(bo);  // migrates the file, devices tables included
    store s(path);
    engine e;
    effects fx;
    batch b;
    every_state(e, fx, "", 1000);
    persist(e, fx, b, 1000);
    s.write(b);
    EXPECT_EQ(s.unpublished().size(), e.tasks().size());
    batch pub;
    for (const auto& [id, t] : e.tasks()) pub.published.emplace_back(id, t.seq);
    s.write(pub);
    EXPECT_TRUE(s.unpublished().empty());

    engine r;
    EXPECT_EQ(s.load(r, 2000), 0u);
    ASSERT_EQ(r.tasks().size(), e.tasks().size());
    for (const auto& [id, t] : e.tasks()) {
        const task* back = r.find_task(id);
        ASSERT_TRUE(back) << id;
        EXPECT_EQ(back->state, t.state) << id;
        EXPECT_EQ(back->seq, t.seq) << id;
        EXPECT_EQ(back->attempts.size(), t.attempts.size()) << id;
    }
    EXPECT_EQ(r.devices().all().size(), 3u);
    EXPECT_EQ(r.devices().find("d1")->caps.arch, "arm64");
    EXPECT_EQ(r.queued(), 1u);
    EXPECT_EQ(s.prune(3000), 3u);  // succeeded, canceled, expired
}

// A child process writes batches and reports each commit on a pipe; the parent kills it with
// SIGKILL mid-stream. Everything the child reported committed must be back, every attempt too.
TEST(devices_store, survives_sigkill_of_the_writer) {
    test::temp_dir dir;
    std::string path = (dir / "buffer.db").string();
    { store init(path); }
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        try {
            store s(path);
            engine e;
            effects fx;
            for (int i = 0;; ++i) {
                batch b;
                every_state(e, fx, "r" + std::to_string(i) + "-", 1000 + i);
                persist(e, fx, b, 1000 + i);
                s.write(b);
                uint32_t n = static_cast<uint32_t>(i);
                if (write(fds[1], &n, sizeof n) != sizeof n) _exit(1);
            }
        } catch (const std::exception& ex) {
            fprintf(stderr, "writer: %s\n", ex.what());
            _exit(2);
        }
    }
    close(fds[1]);
    uint32_t last = 0;
    for (int k = 0; k < 20; ++k) ASSERT_EQ(read(fds[0], &last, sizeof last), 4);
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    ASSERT_TRUE(WIFSIGNALED(st));
    close(fds[0]);

    store s(path);
    engine r;
    EXPECT_EQ(s.load(r, 5000), 0u);
    for (uint32_t i = 0; i <= last; ++i) {
        std::string p = "r" + std::to_string(i) + "-";
        ASSERT_TRUE(r.find_task(p + "ok")) << p;
        EXPECT_EQ(r.find_task(p + "ok")->state, task_state::succeeded);
        EXPECT_EQ(r.find_task(p + "acc")->state, task_state::accepted);
        EXPECT_EQ(r.find_task(p + "run")->state, task_state::running);
        EXPECT_EQ(r.find_task(p + "disp")->state, task_state::dispatched);
        EXPECT_EQ(r.find_task(p + "q")->state, task_state::queued);
        EXPECT_EQ(r.find_task(p + "cancel")->state, task_state::canceled);
        EXPECT_EQ(r.find_task(p + "gone")->state, task_state::expired);
        EXPECT_EQ(r.find_task(p + "run")->attempts.size(), 1u);
    }
    // Attempts in flight after the restart: kept while their device shows up, else retried.
    effects fx;
    r.on_status("r0-d2", json{{"state", "online"}, {"boot", "b1"}}.dump(), 5001, fx);
    r.tick(5000 + 5000, fx);
    size_t lost = 0;
    for (const auto& [id, t] : r.tasks()) {
        if (t.final || t.attempts.empty()) continue;
        if (t.attempts[0].device == "r0-d2") {
            EXPECT_TRUE(t.current()) << id;  // its device came back: kept
        } else if (t.attempts[0].ended_ms == 10000) {
            ++lost;
            EXPECT_EQ(t.state, task_state::queued) << id;  // no free device: back in the queue
        }
    }
    EXPECT_GT(lost, 0u);
}

}  // namespace
}  // namespace egw::devices
