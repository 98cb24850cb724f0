// SPDX-License-Identifier: Apache-2.0
// Payload validation of the device and task topics, and the round trip of stored documents.
#include "gateway/devices/messages.h"

#include <gtest/gtest.h>

#include "gateway/devices/registry.h"

namespace egw::devices {
namespace {

TEST(devices_messages, register_requires_boot_caps_and_tasks) {
    EXPECT_EQ(parse_register("{").error, "not valid JSON");
    EXPECT_EQ(parse_register("[1]").error, "not a JSON object");
    EXPECT_EQ(parse_register(R"({"caps":{"cores":1,"memory_mb":1},"tasks":[]})").error,
              "boot: required");
    EXPECT_EQ(parse_register(R"({"boot":"b","tasks":[]})").error, "caps: required");
    EXPECT_EQ(parse_register(R"({"boot":"b","caps":{"cores":1,"memory_mb":1}})").error,
              "tasks: required");
    EXPECT_EQ(parse_register(R"({"boot":"b","caps":{"cores":0,"memory_mb":1},"tasks":[]})").error,
              "caps.cores: must be an integer >= 1");
    EXPECT_EQ(parse_register(R"({"boot":"b","caps":{"cores":1,"memory_mb":1},"tasks":[{}]})").error,
              "tasks[0].type: required");
    EXPECT_EQ(parse_register(R"({"boot":"b","caps":{"cores":1,"memory_mb":1},
                 "tasks":[{"type":"a"},{"type":"a"}]})")
                  .error,
              "tasks[1].type: 'a' listed twice");
    auto ok = parse_register(R"({"boot":"b1","caps":{"cores":4,"arch":"arm64","memory_mb":2048,
        "accelerators":["npu"],"benchmark":12.5,"bandwidth_kbps":1000},
        "tasks":[{"type":"resize","version":"1.2.0","max_concurrent":2}],"labels":{"site":"a"}})");
    ASSERT_TRUE(ok) << ok.error;
    EXPECT_EQ(ok.value->caps.cores, 4);
    EXPECT_EQ(ok.value->tasks[0].max_concurrent, 2);
    EXPECT_EQ(ok.value->labels.at("site"), "a");
}

TEST(devices_messages, submit_validation_and_defaults) {
    EXPECT_EQ(parse_submit(R"({"type":"x"})").error, "task: required");
    EXPECT_EQ(parse_submit(R"({"task":"a/b","type":"x"})").error.substr(0, 5), "task:");
    EXPECT_EQ(parse_submit(R"({"task":"t","type":"x","deadline_ms":-1})").error,
              "deadline_ms: must be an integer >= 1");
    EXPECT_EQ(
        parse_submit(R"({"task":"t","type":"x","requirements":{"accelerators":"gpu"}})").error,
        "requirements.accelerators: must be an array of strings");
    auto s = parse_submit(R"({"task":"t","type":"x","input":{"k":1},"priority":5,
        "requirements":{"min_cores":2,"max_rtt_ms":50,"labels":{"zone":"1"}}})");
    ASSERT_TRUE(s) << s.error;
    EXPECT_EQ(s.value->req.min_cores, 2);
    EXPECT_EQ(*s.value->req.max_rtt_ms, 50);
    EXPECT_EQ(s.value->input["k"], 1);
}

TEST(devices_messages, device_report_states_and_errors) {
    EXPECT_EQ(parse_device_report(R"({"task":"t","attempt":1,"state":"queued"})").error,
              "state: must be accepted, rejected, running, succeeded or failed");
    auto r = parse_device_report(
        R"({"task":"t","attempt":2,"state":"failed","error":{"message":"oom","retryable":true}})");
    ASSERT_TRUE(r);
    EXPECT_TRUE(r.value->retryable);
    EXPECT_EQ(r.value->error, "oom");
}

TEST(devices_messages, versions) {
    EXPECT_TRUE(version_satisfies("1.2.0", ""));
    EXPECT_TRUE(version_satisfies("1.2.0", "1.1"));
    EXPECT_TRUE(version_satisfies("1.2.0", "1.2.0"));
    EXPECT_FALSE(version_satisfies("1.2.0", "1.3"));
    EXPECT_FALSE(version_satisfies("2.0.0", "1.0"));
    EXPECT_TRUE(version_satisfies("beta", "beta"));
    EXPECT_FALSE(version_satisfies("beta", "1.0"));
}

TEST(devices_messages, rtt_follows_rfc_6298) {
    rtt_estimate r;
    r.sample(100);
    EXPECT_DOUBLE_EQ(r.srtt_ms, 100);
    EXPECT_DOUBLE_EQ(r.rttvar_ms, 50);
    r.sample(200);
    EXPECT_DOUBLE_EQ(r.rttvar_ms, 0.75 * 50 + 0.25 * 100);
    EXPECT_DOUBLE_EQ(r.srtt_ms, 0.875 * 100 + 0.125 * 200);
}

TEST(devices_messages, documents_round_trip) {
    task t;
    t.spec = *parse_submit(R"({"task":"t1","type":"x","requirements":{"max_rtt_ms":5}})").value;
    t.spec.max_attempts = 3;
    t.state = task_state::running;
    t.seq = 4;
    t.attempts.push_back({1, "d1", "b1", 10, 20, 15, task_state::rejected, "no"});
    t.attempts.push_back({2, "d2", "b2", 16, 26, 0, task_state::running, ""});
    t.excluded = {"d1"};
    task back;
    ASSERT_TRUE(task_from_document(json::parse(task_document(t).dump()), back));
    EXPECT_EQ(back.attempts.size(), 2u);
    EXPECT_EQ(back.attempts[0].state, task_state::rejected);
    EXPECT_EQ(back.current()->device, "d2");
    EXPECT_EQ(back.seq, 4u);
    EXPECT_EQ(*back.spec.req.max_rtt_ms, 5);
    EXPECT_EQ(back.excluded.count("d1"), 1u);
}

}  // namespace
}  // namespace egw::devices
