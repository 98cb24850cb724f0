// SPDX-License-Identifier: Apache-2.0
// The filter and the score as pure functions, and pick() over a registry.
#include "gateway/devices/scheduler.h"

#include <gtest/gtest.h>

namespace egw::devices {
namespace {

device dev(std::string id, int cores, int64_t mem, std::vector<std::string> acc = {}) {
    device d;
    d.id = std::move(id);
    d.online = true;
    d.caps.cores = cores;
    d.caps.memory_mb = mem;
    d.caps.accelerators = std::move(acc);
    d.tasks.push_back({"infer", "1.4.0", 2, 0});
    return d;
}

task_spec spec() {
    task_spec s;
    s.id = "t";
    s.type = "infer";
    return s;
}

TEST(devices_scheduler, filter_names_the_first_unmet_requirement) {
    device d = dev("a", 2, 1024);
    d.labels["zone"] = "north";
    task_spec s = spec();
    std::set<std::string> none;
    EXPECT_EQ(check(d, s, none), verdict::eligible);
    s.type = "other";
    EXPECT_EQ(check(d, s, none), verdict::no_type);
    s = spec();
    s.version = "1.5";
    EXPECT_EQ(check(d, s, none), verdict::version);
    s = spec();
    s.req.min_cores = 4;
    EXPECT_EQ(check(d, s, none), verdict::cores);
    s = spec();
    s.req.min_memory_mb = 2048;
    EXPECT_EQ(check(d, s, none), verdict::memory);
    s = spec();
    s.req.accelerators = {"gpu"};
    EXPECT_EQ(check(d, s, none), verdict::accelerator);
    s = spec();
    s.req.labels["zone"] = "south";
    EXPECT_EQ(check(d, s, none), verdict::label);
    s = spec();
    s.req.max_rtt_ms = 20;
    EXPECT_EQ(check(d, s, none), verdict::eligible);  // unknown round trip passes
    d.rtt.sample(30);
    EXPECT_EQ(check(d, s, none), verdict::rtt);
    s = spec();
    EXPECT_EQ(check(d, s, {"a"}), verdict::excluded);
    d.tasks[0].in_flight = 2;
    EXPECT_EQ(check(d, s, none), verdict::capacity);
    d.online = false;
    EXPECT_EQ(check(d, s, none), verdict::offline);
}

TEST(devices_scheduler, score_prefers_fit_free_capacity_good_links_and_health) {
    score_options o;
    task_spec s = spec();
    s.req.min_cores = 2;
    s.req.min_memory_mb = 1024;
    device tight = dev("tight", 2, 1024), big = dev("big", 16, 16384);
    EXPECT_GT(score(tight, s, 0, o), score(big, s, 0, o));
    device gpu = dev("gpu", 2, 1024, {"gpu"});
    EXPECT_GT(score(tight, s, 0, o), score(gpu, s, 0, o));  // keeps the GPU free
    device busy = tight;
    busy.tasks[0].in_flight = 1;
    EXPECT_GT(score(tight, s, 0, o), score(busy, s, 0, o));
    device near = tight, far = tight;
    near.rtt.sample(5);
    far.rtt.sample(400);
    EXPECT_GT(score(near, s, 0, o), score(tight, s, 0, o));  // unknown is neutral
    EXPECT_GT(score(tight, s, 0, o), score(far, s, 0, o));
    EXPECT_GT(score(tight, s, 0, o), score(tight, s, 1, o));
    // The documented formula, term by term: fit 1, load 1, link 0.5, health 1.
    EXPECT_DOUBLE_EQ(score(tight, s, 0, o), 100 * (1 + 2 + 0.5 + 2) / 6);
}

TEST(devices_scheduler, pick_takes_the_best_eligible_and_says_why_not) {
    registry reg;
    const char* small = R"({"boot":"1","caps":{"cores":2,"memory_mb":1024},
        "tasks":[{"type":"infer","version":"1.0","max_concurrent":1}]})";
    const char* large = R"({"boot":"1","caps":{"cores":8,"memory_mb":8192},
        "tasks":[{"type":"infer","version":"1.0","max_concurrent":1}]})";
    ASSERT_TRUE(reg.on_register("s", small, 0).ok);
    ASSERT_TRUE(reg.on_register("l", large, 0).ok);
    scheduler sch;
    task t;
    t.spec = spec();
    t.spec.req.min_cores = 2;
    auto c = sch.pick(reg, t, 0);
    ASSERT_TRUE(c.best);
    EXPECT_EQ(c.best->id, "s");
    t.spec.req.min_cores = 4;
    EXPECT_EQ(sch.pick(reg, t, 0).best->id, "l");
    t.spec.req.min_cores = 32;
    c = sch.pick(reg, t, 0);
    EXPECT_FALSE(c.best);
    EXPECT_EQ(c.why_not, verdict::cores);
    t.spec.type = "nothing";
    EXPECT_EQ(sch.pick(reg, t, 0).why_not, verdict::no_type);
}

TEST(devices_scheduler, a_large_fleet_is_sampled_and_every_device_gets_a_turn) {
    registry reg;
    for (int i = 0; i < 1000; ++i) {
        ASSERT_TRUE(reg.on_register("d" + std::to_string(i), R"({"boot":"1","caps":{"cores":1,
            "memory_mb":1},"tasks":[{"type":"infer","max_concurrent":1}]})",
                                    0)
                        .ok);
    }
    scheduler_options o;
    o.feasible_sample = 10;
    scheduler sch(o);
    task t;
    t.spec = spec();
    std::set<std::string> chosen;
    for (int i = 0; i < 100; ++i) {
        auto c = sch.pick(reg, t, 0);
        EXPECT_EQ(c.considered, 10u);
        ASSERT_TRUE(c.best);
        chosen.insert(c.best->id);
    }
    EXPECT_EQ(chosen.size(), 100u);
}

// pick() filters labels from its index first (a 64-bit summary of each device's key=value
// pairs) and checks the survivors exactly: only devices whose labels match are ever chosen, a
// near miss ("zone=a" vs "zone=ab", "zon=ea") included, and "why not" still says `label`.
TEST(devices_scheduler, labels_pick_exactly_the_matching_devices_of_a_fleet) {
    registry reg;
    const std::vector<std::pair<std::string, std::string>> zones = {
        {"zone", "a"}, {"zone", "ab"}, {"zon", "ea"}, {"rack", "a"}};
    for (int i = 0; i < 400; ++i) {
        const auto& [k, v] = zones[i % zones.size()];
        json reg_msg = {{"boot", "1"},
                        {"caps", {{"cores", 1 + i % 8}, {"memory_mb", 1024}}},
                        {"tasks", {{{"type", "infer"}, {"max_concurrent", 1}}}},
                        {"labels", {{k, v}, {"n", std::to_string(i)}}}};
        ASSERT_TRUE(reg.on_register("d" + std::to_string(i), reg_msg.dump(), 0).ok);
    }
    scheduler_options o;
    o.feasible_sample = 5;
    scheduler sch(o);
    task t;
    t.spec = spec();
    t.spec.req.labels["zone"] = "a";
    for (int i = 0; i < 200; ++i) {
        auto c = sch.pick(reg, t, 0);
        ASSERT_TRUE(c.best);
        EXPECT_EQ(c.best->labels.at("zone"), "a");
        EXPECT_EQ(check(*c.best, t.spec, {}), verdict::eligible);
    }
    t.spec.req.labels["n"] = "5";  // d5 has zone=ab
    auto c = sch.pick(reg, t, 0);
    EXPECT_FALSE(c.best);
    EXPECT_EQ(c.why_not, verdict::label);
    t.spec.req.labels["n"] = "4";  // d4 has zone=a
    c = sch.pick(reg, t, 0);
    ASSERT_TRUE(c.best);
    EXPECT_EQ(c.best->id, "d4");
}

}  // namespace
}  // namespace egw::devices
