// SPDX-License-Identifier: Apache-2.0
// The task state machine driven by events with explicit time: no sockets, no clock.
#include "gateway/devices/engine.h"

#include <gtest/gtest.h>

namespace egw::devices {
namespace {

std::string reg_msg(const std::string& boot, int cores = 2, int max_concurrent = 1,
                    const std::string& type = "infer") {
    return json{
        {"boot", boot},
        {"caps", {{"cores", cores}, {"memory_mb", 1024}}},
        {"tasks", {{{"type", type}, {"version", "1.0"}, {"max_concurrent", max_concurrent}}}}}
        .dump();
}

std::string status(const std::string& state, const std::string& boot) {
    return json{{"state", state}, {"boot", boot}}.dump();
}

std::string report(const std::string& task, int attempt, const std::string& state,
                   bool retryable = false) {
    json j = {{"task", task}, {"attempt", attempt}, {"state", state}};
    if (state == "succeeded") j["result"] = {{"answer", 42}};
    if (state == "failed") j["error"] = {{"message", "boom"}, {"retryable", retryable}};
    return j.dump();
}

struct fixture : ::testing::Test {
    engine_options opts() {
        engine_options o;
        o.default_attempt_timeout_ms = 1000;
        o.default_max_attempts = 3;
        return o;
    }
    engine e{opts()};
    effects fx;
    std::vector<json> states;  // every state published, in order

    void take() {
        for (auto& s : fx.states) states.push_back(s);
        fx.clear();
    }
    void submit(const std::string& body, time_ms now) {
        ASSERT_TRUE(e.submit(body, now, fx).ok);
        take();
    }
    std::vector<std::string> states_of(const std::string& task) const {
        std::vector<std::string> out;
        for (const auto& s : states) {
            if (s["task"] == task) out.push_back(s["state"]);
        }
        return out;
    }
    // The device the last dispatch of `task` went to.
    std::string device_of(const std::string& task) const {
        return e.find_task(task)->attempts.back().device;
    }
    void check_seq_increases() const {
        std::map<std::string, uint64_t> last;
        for (const auto& s : states) {
            uint64_t seq = s["seq"];
            EXPECT_GT(seq, last[s["task"]]) << s.dump();
            last[s["task"]] = seq;
        }
    }
};

TEST_F(fixture, waits_queued_until_a_capable_device_registers) {
    submit(R"({"task":"t1","type":"infer","requirements":{"min_cores":4}})", 0);
    EXPECT_EQ(states_of("t1"), (std::vector<std::string>{"queued"}));
    e.on_register("small", reg_msg("b", 2), 10, fx);
    take();
    EXPECT_EQ(e.find_task("t1")->state, task_state::queued);
    EXPECT_NE(e.find_task("t1")->reason.find("not enough cores"), std::string::npos);
    e.on_register("big", reg_msg("b", 8), 20, fx);
    ASSERT_EQ(fx.to_devices.size(), 1u);
    EXPECT_EQ(fx.to_devices[0].device, "big");
    EXPECT_EQ(json::parse(fx.to_devices[0].payload)["attempt"], 1);
    take();
    EXPECT_EQ(states_of("t1"), (std::vector<std::string>{"queued", "dispatched"}));
    EXPECT_EQ(e.on_report("big", "t1", report("t1", 1, "accepted"), 30, fx),
              engine::report_result::applied);
    e.on_report("big", "t1", report("t1", 1, "running"), 31, fx);
    e.on_report("big", "t1", report("t1", 1, "succeeded"), 40, fx);
    take();
    EXPECT_EQ(states_of("t1"), (std::vector<std::string>{"queued", "dispatched", "accepted",
                                                         "running", "succeeded"}));
    EXPECT_EQ(states.back()["result"]["answer"], 42);
    EXPECT_TRUE(states.back()["final"]);
    EXPECT_EQ(e.devices().find("big")->in_flight, 0);
    check_seq_increases();
}

TEST_F(fixture, a_will_ends_the_attempt_at_once_and_the_task_moves_elsewhere) {
    e.on_register("a", reg_msg("a1", 2), 0, fx);
    e.on_register("b", reg_msg("b1", 4), 0, fx);
    take();
    submit(R"({"task":"t","type":"infer","requirements":{"min_cores":2}})", 100);
    EXPECT_EQ(device_of("t"), "a");  // the tighter fit
    e.on_report("a", "t", report("t", 1, "accepted"), 110, fx);
    take();
    EXPECT_EQ(e.on_status("a", status("offline", "a1"), 120, fx), registry::status_result::offline);
    ASSERT_EQ(fx.to_devices.size(), 1u);
    EXPECT_EQ(fx.to_devices[0].device, "b");
    EXPECT_EQ(json::parse(fx.to_devices[0].payload)["attempt"], 2);
    take();
    EXPECT_EQ(states_of("t"), (std::vector<std::string>{"queued", "dispatched", "accepted",
                                                        "failed", "dispatched"}));
    EXPECT_EQ(e.find_task("t")->attempts[0].reason, "device offline (will)");
    EXPECT_EQ(e.find_task("t")->excluded.count("a"), 1u);
    EXPECT_EQ(e.counters().lost, 1u);
    // Device a comes back: the task stays with b, and a's late result is fenced off.
    e.on_register("a", reg_msg("a2", 2), 130, fx);
    EXPECT_EQ(e.on_report("a", "t", report("t", 1, "succeeded"), 140, fx),
              engine::report_result::stale);
    EXPECT_EQ(e.counters().stale_reports, 1u);
    EXPECT_EQ(e.find_task("t")->state, task_state::dispatched);
    e.on_report("b", "t", report("t", 2, "succeeded"), 150, fx);
    take();
    EXPECT_EQ(e.find_task("t")->state, task_state::succeeded);
    check_seq_increases();
}

TEST_F(fixture, a_stale_will_after_re_registration_is_ignored) {
    e.on_register("a", reg_msg("boot1"), 0, fx);
    e.on_register("a", reg_msg("boot2"), 10, fx);  // reconnected before its old will arrived
    take();
    submit(R"({"task":"t","type":"infer"})", 20);
    EXPECT_EQ(e.on_status("a", status("offline", "boot1"), 30, fx), registry::status_result::stale);
    EXPECT_TRUE(e.devices().find("a")->online);
    EXPECT_EQ(e.devices().counters().stale_wills, 1u);
    EXPECT_EQ(e.find_task("t")->state, task_state::dispatched);
    EXPECT_EQ(e.on_status("a", status("offline", "boot2"), 40, fx),
              registry::status_result::offline);
    EXPECT_FALSE(e.devices().find("a")->online);
}

TEST_F(fixture, a_restart_with_a_new_boot_loses_the_attempts_of_the_old_one) {
    e.on_register("a", reg_msg("boot1", 2, 1), 0, fx);
    take();
    submit(R"({"task":"t","type":"infer","max_attempts":1})", 10);
    e.on_register("a", reg_msg("boot2", 2, 1), 20, fx);
    take();
    EXPECT_EQ(states_of("t"), (std::vector<std::string>{"queued", "dispatched", "failed"}));
    EXPECT_TRUE(e.find_task("t")->final);
    EXPECT_NE(e.find_task("t")->reason.find("max_attempts"), std::string::npos);
}

TEST_F(fixture, timeouts_retry_until_max_attempts) {
    for (const char* d : {"a", "b", "c", "d"}) e.on_register(d, reg_msg("1"), 0, fx);
    take();
    submit(R"({"task":"t","type":"infer","attempt_timeout_ms":100,"max_attempts":3})", 0);
    e.tick(0, fx);  // pings are due at once for new devices
    take();
    EXPECT_EQ(e.next_wakeup(), 100);
    std::set<std::string> used = {device_of("t")};
    e.tick(100, fx);  // attempt 1 times out: a cancel to its device, attempt 2 elsewhere
    ASSERT_GE(fx.to_devices.size(), 2u);
    EXPECT_EQ(fx.to_devices[0].what, device_command::kind::cancel);
    take();
    used.insert(device_of("t"));
    e.tick(200, fx);
    take();
    used.insert(device_of("t"));
    e.tick(300, fx);
    take();
    EXPECT_EQ(used.size(), 3u);
    EXPECT_EQ(states_of("t"),
              (std::vector<std::string>{"queued", "dispatched", "timed_out", "dispatched",
                                        "timed_out", "dispatched", "timed_out"}));
    EXPECT_TRUE(e.find_task("t")->final);
    EXPECT_EQ(e.counters().timed_out, 3u);
    e.tick(10'000, fx);
    EXPECT_TRUE(fx.states.empty());
    check_seq_increases();
}

TEST_F(fixture, rejected_and_retryable_failures_move_on_a_fatal_one_ends_it) {
    e.on_register("a", reg_msg("1"), 0, fx);
    e.on_register("b", reg_msg("1"), 0, fx);
    take();
    submit(R"({"task":"t","type":"infer"})", 0);
    std::string first = device_of("t");
    e.on_report(first, "t", report("t", 1, "rejected"), 5, fx);
    std::string second = device_of("t");
    EXPECT_NE(first, second);
    e.on_report(second, "t", report("t", 2, "failed", true), 6, fx);
    take();
    // Both devices failed it: it waits for a third.
    EXPECT_EQ(e.find_task("t")->state, task_state::queued);
    e.on_register("c", reg_msg("1"), 7, fx);
    EXPECT_EQ(device_of("t"), "c");
    e.on_report("c", "t", report("t", 3, "failed", false), 8, fx);
    take();
    EXPECT_EQ(states_of("t"),
              (std::vector<std::string>{"queued", "dispatched", "rejected", "dispatched", "failed",
                                        "queued", "dispatched", "failed"}));
    EXPECT_TRUE(e.find_task("t")->final);
    EXPECT_EQ(e.find_task("t")->reason, "boom");
}

TEST_F(fixture, duplicate_submit_is_a_no_op_repeating_the_state) {
    e.on_register("a", reg_msg("1"), 0, fx);
    take();
    submit(R"({"task":"t","type":"infer"})", 0);
    uint64_t seq = e.find_task("t")->seq;
    auto r = e.submit(R"({"task":"t","type":"infer"})", 5, fx);
    EXPECT_TRUE(r.duplicate);
    EXPECT_TRUE(fx.to_devices.empty());
    ASSERT_EQ(fx.states.size(), 1u);
    EXPECT_EQ(fx.states[0]["seq"], seq);
    EXPECT_EQ(fx.states[0]["state"], "dispatched");
    EXPECT_EQ(e.find_task("t")->attempts.size(), 1u);
    EXPECT_EQ(e.counters().duplicate_submits, 1u);
}

TEST_F(fixture, results_from_devices_not_given_the_task_are_refused) {
    e.on_register("a", reg_msg("1"), 0, fx);
    e.on_register("x", reg_msg("1"), 0, fx);
    take();
    submit(R"({"task":"t","type":"infer","requirements":{"labels":{}}})", 0);
    std::string other = device_of("t") == "a" ? "x" : "a";
    EXPECT_EQ(e.on_report(other, "t", report("t", 1, "succeeded"), 1, fx),
              engine::report_result::not_given);
    EXPECT_EQ(e.on_report("a", "nope", report("nope", 1, "succeeded"), 1, fx),
              engine::report_result::unknown_task);
    EXPECT_EQ(e.on_report("a", "t", report("other", 1, "succeeded"), 1, fx),
              engine::report_result::invalid);
    EXPECT_EQ(e.on_report(device_of("t"), "t", report("t", 7, "succeeded"), 1, fx),
              engine::report_result::not_given);
    EXPECT_EQ(e.counters().not_given_reports, 2u);
    EXPECT_EQ(e.find_task("t")->state, task_state::dispatched);
}

TEST_F(fixture, cancel_tells_the_device_and_nothing_follows) {
    e.on_register("a", reg_msg("1"), 0, fx);
    take();
    submit(R"({"task":"t","type":"infer"})", 0);
    ASSERT_TRUE(e.cancel("t", 10, fx).ok);
    ASSERT_EQ(fx.to_devices.size(), 1u);
    EXPECT_EQ(fx.to_devices[0].what, device_command::kind::cancel);
    take();
    EXPECT_FALSE(e.cancel("t", 11, fx).ok);
    EXPECT_FALSE(e.cancel("nope", 11, fx).ok);
    EXPECT_EQ(e.on_report("a", "t", report("t", 1, "succeeded"), 12, fx),
              engine::report_result::stale);
    e.tick(100'000, fx);
    take();
    EXPECT_EQ(states_of("t"), (std::vector<std::string>{"queued", "dispatched", "canceled"}));
    EXPECT_EQ(e.devices().find("a")->in_flight, 0);
}

TEST_F(fixture, deadline_while_queued_expires_with_the_reason) {
    submit(R"({"task":"t","type":"infer","deadline_ms":500})", 1000);
    e.tick(1499, fx);
    take();
    EXPECT_EQ(e.find_task("t")->state, task_state::queued);
    EXPECT_EQ(e.next_wakeup(), 1500);
    e.tick(1500, fx);
    take();
    EXPECT_EQ(states_of("t"), (std::vector<std::string>{"queued", "expired"}));
    EXPECT_NE(states.back()["reason"].get<std::string>().find("no device runs this task type"),
              std::string::npos);
    e.on_register("a", reg_msg("1"), 1600, fx);
    EXPECT_TRUE(fx.states.empty());
}

TEST_F(fixture, deadline_during_an_attempt_cancels_it) {
    e.on_register("a", reg_msg("1"), 0, fx);
    take();
    submit(R"({"task":"t","type":"infer","deadline_ms":300,"attempt_timeout_ms":1000})", 0);
    e.tick(300, fx);
    bool cancel = false;
    for (auto& c : fx.to_devices) cancel |= c.what == device_command::kind::cancel;
    EXPECT_TRUE(cancel);
    take();
    EXPECT_EQ(e.find_task("t")->state, task_state::expired);
}

TEST_F(fixture, capacity_and_priority_order_the_queue) {
    e.on_register("a", reg_msg("1", 2, 1), 0, fx);
    take();
    submit(R"({"task":"t1","type":"infer"})", 0);
    submit(R"({"task":"low","type":"infer","priority":1})", 1);
    submit(R"({"task":"high","type":"infer","priority":9})", 2);
    EXPECT_EQ(e.find_task("low")->state, task_state::queued);
    EXPECT_NE(e.find_task("low")->reason.find("max_concurrent"), std::string::npos);
    e.on_report("a", "t1", report("t1", 1, "succeeded"), 3, fx);
    take();
    EXPECT_EQ(e.find_task("high")->state, task_state::dispatched);
    EXPECT_EQ(e.find_task("low")->state, task_state::queued);
}

TEST_F(fixture, invalid_register_leaves_the_record) {
    e.on_register("a", reg_msg("1", 4), 0, fx);
    auto r = e.on_register("a", R"({"boot":"2","caps":{"cores":"many"}})", 1, fx);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "caps.cores: must be an integer >= 1");
    EXPECT_EQ(e.devices().find("a")->caps.cores, 4);
    EXPECT_EQ(e.devices().find("a")->boot, "1");
    EXPECT_EQ(e.devices().counters().register_invalid, 1u);
}

TEST_F(fixture, pings_measure_the_round_trip) {
    e.on_register("a", reg_msg("1"), 0, fx);
    fx.clear();
    e.tick(0, fx);
    ASSERT_EQ(fx.to_devices.size(), 1u);
    ASSERT_EQ(fx.to_devices[0].what, device_command::kind::ping);
    std::string nonce = fx.to_devices[0].payload;
    fx.clear();
    e.on_pong("a", "wrong", 10, fx);
    EXPECT_FALSE(e.devices().find("a")->rtt.known);
    e.on_pong("a", nonce, 40, fx);
    EXPECT_TRUE(e.devices().find("a")->rtt.known);
    EXPECT_DOUBLE_EQ(e.devices().find("a")->rtt.srtt_ms, 40);
    EXPECT_EQ(fx.devices_changed, (std::vector<std::string>{"a"}));
    EXPECT_EQ(e.next_wakeup(), e.devices().options().ping_interval_ms);
}

TEST_F(fixture, restore_keeps_attempts_of_online_devices_and_retries_the_rest) {
    e.on_register("a", reg_msg("a1"), 0, fx);
    e.on_register("b", reg_msg("b1"), 0, fx);
    e.on_register("c", reg_msg("c1"), 0, fx);
    take();
    submit(R"({"task":"t1","type":"infer","attempt_timeout_ms":60000})", 0);
    submit(R"({"task":"t2","type":"infer","attempt_timeout_ms":60000})", 0);
    submit(R"({"task":"q","type":"other"})", 0);
    submit(R"({"task":"done","type":"infer"})", 0);
    e.on_report(device_of("done"), "done", report("done", 1, "succeeded"), 1, fx);
    take();
    // Restart: a new engine from the documents and records.
    engine r(opts());
    for (const auto& [id, d] : e.devices().all()) {
        device back;
        ASSERT_TRUE(device_from_record(json::parse(device_record(*d).dump()), back));
        r.restore_device(back);
    }
    for (const auto& [id, t] : e.tasks()) {
        task back;
        ASSERT_TRUE(task_from_document(json::parse(task_document(t).dump()), back));
        r.restore_task(back);
    }
    r.restored(1000);
    std::string keep = device_of("t1"), lost = device_of("t2");
    ASSERT_NE(keep, lost);
    effects f2;
    r.on_status(keep, status("online", e.devices().find(keep)->boot), 1001, f2);
    EXPECT_EQ(r.find_task("q")->state, task_state::queued);
    EXPECT_EQ(r.devices().find(keep)->in_flight, 1);
    f2.clear();
    r.tick(1000 + 5000, f2);
    EXPECT_EQ(r.find_task("t1")->current()->device, keep);
    EXPECT_EQ(r.find_task("t2")->attempts[0].state, task_state::failed);
    // Retried on the only online device with room: none (keep is at max_concurrent 1).
    EXPECT_EQ(r.find_task("t2")->state, task_state::queued);
    EXPECT_GT(r.find_task("t2")->seq, e.find_task("t2")->seq);
    EXPECT_TRUE(r.find_task("done")->final);
    // The kept attempt still finishes.
    EXPECT_EQ(r.on_report(keep, "t1", report("t1", 1, "succeeded"), 6000, f2),
              engine::report_result::applied);
    EXPECT_EQ(r.find_task("t2")->current()->device, keep);
}

}  // namespace
}  // namespace egw::devices
