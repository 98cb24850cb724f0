// SPDX-License-Identifier: Apache-2.0
// Devices and tasks through the real daemon: devices are real MQTT clients on the local broker,
// tasks are submitted through the control socket, states arrive at the cloud broker through the
// buffer and the mqtt sink.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "gateway/control.h"
#include "integration/gateway_test_fixture.h"
#include "support/child_process.h"

namespace egw::test {
namespace {

using namespace std::chrono_literals;

// A device as the tests drive it: a publisher (register, status, reports) and a subscriber on
// its task topic.
struct sim_device {
    std::string id;
    std::unique_ptr<test_publisher> pub;
    std::unique_ptr<test_subscriber> tasks;

    sim_device(const std::string& uri, std::string id_) : id(std::move(id_)) {
        tasks = std::make_unique<test_subscriber>(uri, "sim-sub-" + id);
        tasks->connect({"devices/" + id + "/tasks/+"});
        pub = std::make_unique<test_publisher>(uri, "sim-pub-" + id);
        pub->connect();
    }
    void register_(const std::string& boot, const std::string& type, int max_concurrent = 2) {
        json reg = {
            {"boot", boot},
            {"caps",
             {{"cores", 4},
              {"arch", "x86_64"},
              {"memory_mb", 2048},
              {"accelerators", json::array()},
              {"benchmark", 100},
              {"bandwidth_kbps", 10000}}},
            {"tasks",
             json::array(
                 {{{"type", type}, {"version", "1.0"}, {"max_concurrent", max_concurrent}}})},
            {"labels", json::object()}};
        pub->publish("devices/" + id + "/register", reg.dump());
        pub->publish("devices/" + id + "/status", json{{"state", "online"}, {"boot", boot}}.dump(),
                     1, true);
        pub->flush();
    }
    void report(const std::string& task, int attempt, const std::string& state,
                json result = nullptr) {
        json r = {{"task", task}, {"attempt", attempt}, {"state", state}};
        if (!result.is_null()) r["result"] = result;
        pub->publish("devices/" + id + "/tasks/" + task + "/state", r.dump());
        pub->flush();
    }
};

// Runs an edge-gateway CLI command and returns its standard output.
std::string run_cli(const std::string& cmd) {
    std::string out;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    pclose(p);
    return out;
}

class devices_test : public gateway_test {
protected:
    json control(const json& req) {
        return control_request((gateway_->data_dir() / "control.sock").string(), req);
    }
    // The states the cloud saw for `task`, in arrival order.
    std::vector<json> cloud_states(const std::string& task) {
        std::vector<json> out;
        const std::string topic = cloud_topic("tasks/" + task + "/state");
        for (const auto& m : cloud_sub_->messages())
            if (m.topic == topic) out.push_back(json::parse(m.payload));
        return out;
    }
    bool wait_cloud_state(const std::string& task, const std::string& state,
                          std::chrono::milliseconds timeout) {
        return poll_until(
            [&] {
                for (const auto& s : cloud_states(task))
                    if (s.value("state", "") == state) return true;
                return false;
            },
            timeout, 20ms);
    }
    bool wait_devices_online(size_t n) {
        return gateway_
            ->wait_until([&](const json& s) { return json_at(s, "devices/online") == n; }, 10s)
            .has_value();
    }
};

TEST_F(devices_test,
       task_from_the_box_runs_on_the_capable_device_and_its_result_reaches_the_cloud) {
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    sim_device a(local_->uri(), "dev-a");
    sim_device b(local_->uri(), "dev-b");
    a.register_("boot-a1", "resize");
    b.register_("boot-b1", "transcode");
    ASSERT_TRUE(wait_devices_online(2));

    json submit = {{"task", "t1"}, {"type", "transcode"}, {"input", {{"file", "x.mp4"}}}};
    json r = control({{"cmd", "task_submit"}, {"payload", submit.dump()}});
    ASSERT_EQ(r.value("ok", false), true) << r.dump();

    // Only dev-b can transcode.
    auto msg = b.tasks->wait_for([](const received_message&) { return true; }, 10s);
    ASSERT_TRUE(msg);
    EXPECT_EQ(msg->topic, "devices/dev-b/tasks/t1");
    json task = json::parse(msg->payload);
    EXPECT_EQ(task.value("task", ""), "t1");
    const int attempt = task.value("attempt", 0);
    EXPECT_EQ(attempt, 1);
    EXPECT_FALSE(msg->retained);
    EXPECT_EQ(a.tasks->count(), 0u);
    // MQTT 5: the message expires with its attempt, and names where and how to answer.
    EXPECT_EQ(msg->response_topic, "devices/dev-b/tasks/t1/state");
    EXPECT_EQ(msg->correlation_data, "t1/1");
    ASSERT_TRUE(msg->message_expiry_s.has_value());
    const int64_t ttl_s = (task.value("ttl_ms", int64_t{0}) + 999) / 1000;
    EXPECT_GE(*msg->message_expiry_s + 1, ttl_s);
    EXPECT_LE(*msg->message_expiry_s, ttl_s);

    b.report("t1", attempt, "accepted");
    b.report("t1", attempt, "running");
    b.report("t1", attempt, "succeeded", {{"frames", 42}});
    ASSERT_TRUE(wait_cloud_state("t1", "succeeded", 10s));
    auto states = cloud_states("t1");
    EXPECT_EQ(states.front().value("state", ""), "queued");
    uint64_t last = 0;
    for (const auto& s : states) {
        EXPECT_GT(s.value("seq", uint64_t{0}), last) << s.dump();
        last = s.value("seq", uint64_t{0});
    }
    EXPECT_EQ(states.back().value("device", ""), "dev-b");
    EXPECT_EQ(states.back()["result"], json({{"frames", 42}}));

    // The duplicate submit changes nothing.
    r = control({{"cmd", "task_submit"}, {"payload", submit.dump()}});
    EXPECT_EQ(r.value("duplicate", false), true) << r.dump();
    json shown = control({{"cmd", "tasks"}, {"id", "t1"}});
    EXPECT_EQ(shown["task"].value("state", ""), "succeeded") << shown.dump();

    // The CLI reads the same through the control socket.
    const std::string sock = (gateway_->data_dir() / "control.sock").string();
    std::string out = run_cli(std::string(EGW_GATEWAY_BIN) + " devices --json -s " + sock);
    json listed = json::parse(out);
    ASSERT_EQ(listed["devices"].size(), 2u) << out;
    out = run_cli(std::string(EGW_GATEWAY_BIN) + " tasks --state succeeded --json -s " + sock);
    json tasks = json::parse(out);
    ASSERT_EQ(tasks["tasks"].size(), 1u) << out;
    EXPECT_EQ(tasks["tasks"][0].value("task", ""), "t1");
    const auto file = tmp_.path() / "t9.json";
    {
        std::ofstream f(file);
        f << json{{"task", "t9"}, {"type", "resize"}}.dump();
    }
    run_cli(std::string(EGW_GATEWAY_BIN) + " task submit " + file.string() + " -s " + sock);
    ASSERT_TRUE(a.tasks->wait_for(
        [](const received_message& m) { return m.topic == "devices/dev-a/tasks/t9"; }, 10s));
    run_cli(std::string(EGW_GATEWAY_BIN) + " task cancel t9 -s " + sock);
    ASSERT_TRUE(wait_cloud_state("t9", "canceled", 10s));

    // The registry records reach the cloud.
    ASSERT_TRUE(cloud_sub_->wait_for(
        [](const received_message& m) { return m.topic == cloud_topic("devices/dev-b"); }, 10s));
}

TEST_F(devices_test, a_device_that_accepts_then_vanishes_loses_the_task_to_another_device) {
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    sim_device a(local_->uri(), "dev-a");
    a.register_("boot-a1", "resize");
    ASSERT_TRUE(wait_devices_online(1));

    json submit = {{"task", "t2"}, {"type", "resize"}, {"input", 1}, {"max_attempts", 3}};
    ASSERT_EQ(control({{"cmd", "task_submit"}, {"payload", submit.dump()}}).value("ok", false),
              true);
    auto msg = a.tasks->wait_for([](const received_message&) { return true; }, 10s);
    ASSERT_TRUE(msg);
    a.report("t2", 1, "accepted");
    ASSERT_TRUE(wait_cloud_state("t2", "accepted", 10s));

    // A second capable device, then the first one's will (as the broker would send it).
    sim_device b(local_->uri(), "dev-b");
    b.register_("boot-b1", "resize");
    ASSERT_TRUE(wait_devices_online(2));
    a.pub->publish("devices/dev-a/status", json{{"state", "offline"}, {"boot", "boot-a1"}}.dump(),
                   1, true);
    a.pub->flush();

    auto moved = b.tasks->wait_for([](const received_message&) { return true; }, 10s);
    ASSERT_TRUE(moved);
    json task = json::parse(moved->payload);
    EXPECT_EQ(task.value("attempt", 0), 2);
    // A late result from attempt 1 is ignored.
    a.report("t2", 1, "succeeded", {{"from", "a"}});
    b.report("t2", 2, "succeeded", {{"from", "b"}});
    ASSERT_TRUE(wait_cloud_state("t2", "succeeded", 10s));
    auto states = cloud_states("t2");
    json done;
    for (const auto& s : states)
        if (s.value("state", "") == "succeeded") done = s;
    EXPECT_EQ(done.value("device", ""), "dev-b");
    EXPECT_EQ(done["result"], json({{"from", "b"}}));
}

TEST_F(devices_test, cancel_and_kill9_with_a_task_in_flight_is_reconciled_after_restart) {
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    sim_device a(local_->uri(), "dev-a");
    a.register_("boot-a1", "resize");
    ASSERT_TRUE(wait_devices_online(1));

    ASSERT_EQ(control({{"cmd", "task_submit"},
                       {"payload", json{{"task", "c1"}, {"type", "resize"}}.dump()}})
                  .value("ok", false),
              true);
    ASSERT_TRUE(wait_cloud_state("c1", "dispatched", 10s));
    EXPECT_EQ(control({{"cmd", "task_cancel"}, {"id", "c1"}}).value("ok", false), true);
    ASSERT_TRUE(wait_cloud_state("c1", "canceled", 10s));

    ASSERT_EQ(control({{"cmd", "task_submit"},
                       {"payload", json{{"task", "k1"}, {"type", "resize"}}.dump()}})
                  .value("ok", false),
              true);
    ASSERT_TRUE(wait_cloud_state("k1", "dispatched", 10s));
    a.report("k1", 1, "accepted");
    ASSERT_TRUE(wait_cloud_state("k1", "accepted", 10s));
    gateway_->kill9();
    gateway_->start();
    ASSERT_TRUE(gateway_->wait_for_log("gateway: ready", 10s));
    // The task survived: the device finishes it after the restart and the result reaches the
    // cloud.
    json shown;
    ASSERT_TRUE(poll_until(
        [&] {
            try {
                shown = control({{"cmd", "tasks"}, {"id", "k1"}});
                return shown.contains("task");
            } catch (...) {
                return false;
            }
        },
        10s, 50ms));
    EXPECT_EQ(shown["task"].value("state", ""), "accepted") << shown.dump();
    ASSERT_TRUE(wait_devices_online(1));
    a.report("k1", 1, "succeeded", {{"ok", true}});
    ASSERT_TRUE(wait_cloud_state("k1", "succeeded", 15s));
}

// Two egw-device-sim processes: the first accepts and dies without DISCONNECT (the broker
// publishes its real will), the task moves to the second, which runs it; the result reaches
// the cloud.
TEST_F(devices_test, a_simulated_device_dying_mid_task_hands_the_task_to_the_other_one) {
    start_brokers();
    start_gateway();
    connect_cloud_subscriber();
    auto sim = [&](const std::string& id, std::vector<std::string> extra) {
        std::vector<std::string> argv = {EGW_DEVICE_SIM_BIN, "--uri",  local_->uri(), "--id", id,
                                         "--type",           "render", "--delay-ms",  "200"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        return child_process::spawn(argv, tmp_.path() / (id + ".out"), tmp_.path() / (id + ".err"));
    };
    // Only the doomed device at first: it gets the task, accepts, and dies.
    auto doomed = sim("sim-doomed", {"--vanish-after-accept"});
    ASSERT_TRUE(wait_devices_online(1));
    json submit = {{"task", "r1"}, {"type", "render"}, {"input", "frame-7"}};
    ASSERT_EQ(control({{"cmd", "task_submit"}, {"payload", submit.dump()}}).value("ok", false),
              true);
    ASSERT_TRUE(doomed.wait_for_exit(10s).has_value());
    ASSERT_TRUE(wait_devices_online(0));  // its will, from the broker
    auto healthy = sim("sim-healthy", {});
    ASSERT_TRUE(wait_cloud_state("r1", "succeeded", 20s));
    json done;
    bool doomed_accepted = false;
    for (const auto& st : cloud_states("r1")) {
        if (st.value("state", "") == "accepted" && st.value("device", "") == "sim-doomed")
            doomed_accepted = true;
        if (st.value("state", "") == "succeeded") done = st;
    }
    EXPECT_TRUE(doomed_accepted);
    EXPECT_EQ(done.value("device", ""), "sim-healthy") << done.dump();
    EXPECT_EQ(done.value("attempt", 0), 2) << done.dump();
    EXPECT_EQ(done["result"].value("input", ""), "frame-7");
}

// More dispatches in one loop turn than Paho buffers by default (100 unsent messages): every
// task message still reaches the device at once (before the fix, the rest failed with Paho's
// -12 and waited out their attempt timeout).
TEST_F(devices_test, a_burst_of_dispatches_larger_than_pahos_default_buffer_reaches_the_device) {
    start_brokers();
    start_gateway();
    constexpr int n = 300;
    for (int i = 0; i < n; ++i) {
        json submit = {{"task", "b" + std::to_string(i)}, {"type", "burst"}};
        ASSERT_EQ(control({{"cmd", "task_submit"}, {"payload", submit.dump()}}).value("ok", false),
                  true);
    }
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& s) { return json_at(s, "devices/tasks/queued") == n; }, 10s));
    // All 300 are placed in the turn that handles the register.
    sim_device a(local_->uri(), "dev-burst");
    a.register_("boot-1", "burst", n);
    EXPECT_TRUE(a.tasks->wait_for_count(n, 10s)) << a.tasks->count() << " of " << n;
    auto s = gateway_->status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "devices/publish_errors"), 0);
    EXPECT_GE(json_int(*s, "devices/published_to_devices"), n);  // and the device's first ping
}

// A high-priority route gives the cloud sink a sibling connection ("cloud!high"): the same cloud,
// so each task state and registry record still reaches it once, not once per connection.
TEST_F(devices_test, task_states_reach_the_cloud_once_with_a_high_priority_sibling) {
    start_brokers();
    json c = base_config();
    c["routes"] =
        json::array({{{"from", k_telemetry_filter}, {"to", {"cloud"}}, {"priority", "high"}}});
    start_gateway(c);
    connect_cloud_subscriber();
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& s) { return json_at(s, "sinks/cloud!high/connected") == true; }, 10s))
        << gateway_->last_status();
    sim_device d(local_->uri(), "dev-p");
    d.register_("boot-p1", "render");
    ASSERT_TRUE(wait_devices_online(1));
    json submit = {{"task", "p1"}, {"type", "render"}};
    ASSERT_EQ(control({{"cmd", "task_submit"}, {"payload", submit.dump()}}).value("ok", false),
              true);
    ASSERT_TRUE(d.tasks->wait_for([](const received_message&) { return true; }, 10s));
    d.report("p1", 1, "accepted");
    d.report("p1", 1, "running");
    d.report("p1", 1, "succeeded", {{"ok", true}});
    ASSERT_TRUE(wait_cloud_state("p1", "succeeded", 10s));
    // Every row acknowledged by the cloud broker on both connections.
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& s) {
            return json_at(s, "sinks/cloud/rows_waiting") == 0 &&
                   json_at(s, "sinks/cloud!high/rows_waiting") == 0;
        },
        10s))
        << gateway_->last_status();
    ASSERT_TRUE(cloud_sub_->wait_for(
        [](const received_message& m) { return m.topic == cloud_topic("devices/dev-p"); }, 10s));
    std::vector<uint64_t> seqs;
    for (const auto& st : cloud_states("p1")) seqs.push_back(st.value("seq", uint64_t{0}));
    // queued, dispatched, accepted, running, succeeded: seq 1..5, each once.
    EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
    // Registry records: each buffer row (egw-seq) once.
    std::vector<std::string> record_seqs;
    for (const auto& m : cloud_sub_->messages())
        if (m.topic == cloud_topic("devices/dev-p")) record_seqs.push_back(m.egw_seq.value_or(""));
    ASSERT_FALSE(record_seqs.empty());
    std::sort(record_seqs.begin(), record_seqs.end());
    EXPECT_TRUE(std::adjacent_find(record_seqs.begin(), record_seqs.end()) == record_seqs.end())
        << "a registry record (egw-seq) arrived twice, " << record_seqs.size() << " records";
}

}  // namespace
}  // namespace egw::test
