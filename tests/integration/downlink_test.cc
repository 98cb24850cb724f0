// SPDX-License-Identifier: Apache-2.0
// The downlink through the real daemon (docs/devices.md, Downlink): a cloud client publishes on
// gateways/{gw}/down/{topic} and on the task topics of the cloud Mosquitto, the gateway's cloud
// sink connection takes them, and what the allow-list permits reaches a client of the local
// Mosquitto; what it refuses is answered on gateways/{gw}/downlink/rejected. Tasks from the
// cloud run on a simulated device (egw-device-sim) and their states come back to the cloud.
#include <chrono>
#include <memory>
#include <string>

#include <mqtt/async_client.h>

#include "integration/gateway_test_fixture.h"
#include "support/child_process.h"

namespace egw::test {
namespace {

using namespace std::chrono_literals;

const std::string down_prefix = std::string("gateways/") + k_gateway_id + "/down/";
const std::string rejected_topic = std::string("gateways/") + k_gateway_id + "/downlink/rejected";

class downlink_test : public gateway_test {
protected:
    // base_config() plus the downlink of the issue's example and a second entry capped at QoS 0.
    json downlink_config(int mqtt_version = 5) const {
        json c = base_config();
        c["sinks"]["cloud"]["mqtt_version"] = mqtt_version;
        c["downlink"] = {
            {"sink", "cloud"},
            {"allow",
             json::array({{{"filter", "devices/+/cmd/#"}, {"qos", 1}, {"max_payload_bytes", 64}},
                          {{"filter", "site/display/#"}, {"qos", 0}}})}};
        return c;
    }

    void start_with(const json& config) {
        start_gateway(config);
        ASSERT_TRUE(gateway_->wait_until(
            [](const json& s) { return json_at(s, "downlink/subscribed") == true; }, 15s))
            << "the cloud sink did not subscribe to the downlink";
        local_sub_ = std::make_unique<test_subscriber>(local_->uri(), "egw-it-local-dev");
        local_sub_->connect({"devices/#", "site/#"});
        cloud_pub_ = std::make_unique<test_publisher>(cloud_->uri(), "egw-it-cloud-pub");
        cloud_pub_->connect();
    }

    void down(const std::string& topic, const std::string& payload, int qos = 1,
              bool retained = false) {
        cloud_pub_->publish(down_prefix + topic, payload, qos, retained);
        cloud_pub_->flush();
    }

    // The answers on downlink/rejected, in arrival order.
    std::vector<json> rejections() const {
        std::vector<json> out;
        for (const auto& m : cloud_sub_->messages())
            if (m.topic == rejected_topic) out.push_back(json::parse(m.payload));
        return out;
    }
    std::optional<json> wait_rejection(const std::string& topic) const {
        std::optional<json> found;
        poll_until(
            [&] {
                for (const auto& r : rejections())
                    if (r.value("topic", "") == topic) {
                        found = r;
                        return true;
                    }
                return false;
            },
            10s, 20ms);
        return found;
    }
    std::optional<received_message> wait_local(const std::string& topic) const {
        return local_sub_->wait_for([&](const received_message& m) { return m.topic == topic; },
                                    10s);
    }
    size_t local_count(const std::string& topic) const {
        size_t n = 0;
        for (const auto& m : local_sub_->messages()) n += m.topic == topic ? 1 : 0;
        return n;
    }

    std::unique_ptr<test_subscriber> local_sub_;
    std::unique_ptr<test_publisher> cloud_pub_;
};

// Allow, deny, a retained message, the QoS cap and an oversized payload, on MQTT 5 and 3.1.1.
class downlink_policy_test : public downlink_test, public ::testing::WithParamInterface<int> {};

TEST_P(downlink_policy_test, allowed_messages_reach_the_local_broker_and_refusals_are_answered) {
    const bool v5 = GetParam() == 5;
    start_brokers();
    connect_cloud_subscriber({rejected_topic});
    {
        // Stored retained at the cloud broker before the gateway subscribes: it arrives with
        // the retain flag on 3.1.1 and 5 alike.
        test_publisher early(cloud_->uri(), "egw-it-cloud-early");
        early.connect();
        early.publish(down_prefix + "devices/d1/cmd/stored", "s", 1, true);
        early.flush();
    }
    start_with(downlink_config(GetParam()));
    auto r = wait_rejection(down_prefix + "devices/d1/cmd/stored");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->value("reason", ""), "retained downlink not allowed");

    down("devices/d1/cmd/reboot", "now", 1);
    auto m = wait_local("devices/d1/cmd/reboot");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->payload, "now");
    EXPECT_EQ(m->qos, 1);
    EXPECT_FALSE(m->retained);

    // The entry's QoS caps what the cloud sent, as a bridge's topic QoS does.
    down("site/display/text", "hello", 1);
    m = wait_local("site/display/text");
    ASSERT_TRUE(m);
    EXPECT_EQ(m->qos, 0);

    down("devices/d1/config", "x");                                         // no entry
    down("devices/d1/cmd/retained", "r", 1, true);                          // retained, live
    down("devices/d1/cmd/big", std::string(65, 'b'));                       // > 64 bytes
    down("gateways/" + std::string(k_gateway_id) + "/tasks/submit", "{}");  // reserved
    r = wait_rejection(down_prefix + "devices/d1/config");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->value("reason", ""), "not allowed");
    EXPECT_EQ(r->value("local_topic", ""), "devices/d1/config");
    r = wait_rejection(down_prefix + "devices/d1/cmd/big");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->value("reason", ""), "payload of 65 bytes exceeds 64");
    r = wait_rejection(down_prefix + "gateways/" + std::string(k_gateway_id) + "/tasks/submit");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->value("reason", ""), "topic is reserved");

    // A marker after the refused ones: once it is delivered, none of them was.
    down("devices/d1/cmd/marker", "m");
    ASSERT_TRUE(wait_local("devices/d1/cmd/marker"));
    EXPECT_EQ(local_count("devices/d1/config"), 0u);
    EXPECT_EQ(local_count("devices/d1/cmd/stored"), 0u);
    EXPECT_EQ(local_count("devices/d1/cmd/big"), 0u);
    if (v5) {
        // Retain As Published shows a live retained downlink as one: refused.
        r = wait_rejection(down_prefix + "devices/d1/cmd/retained");
        ASSERT_TRUE(r);
        EXPECT_EQ(r->value("reason", ""), "retained downlink not allowed");
        EXPECT_EQ(local_count("devices/d1/cmd/retained"), 0u);
    } else {
        // 3.1.1 brokers clear the flag on live delivery: it cannot be told from another.
        EXPECT_EQ(local_count("devices/d1/cmd/retained"), 1u);
    }

    const int relayed = v5 ? 3 : 4;
    auto s = gateway_->wait_until(
        [&](const json& st) {
            return json_at(st, "downlink/rejected/not_allowed") == 1 &&
                   json_at(st, "sinks/!downlink/acked") == relayed;
        },
        10s);
    ASSERT_TRUE(s) << gateway_->last_status();
    EXPECT_EQ(json_at(*s, "downlink/rejected/retained"), v5 ? 2 : 1);
    EXPECT_EQ(json_at(*s, "downlink/rejected/too_large"), 1);
    EXPECT_EQ(json_at(*s, "downlink/rejected/other"), 1);
    EXPECT_EQ(json_at(*s, "downlink/buffered"), relayed);
    EXPECT_EQ(json_at(*s, "downlink/received"), 8);
}

INSTANTIATE_TEST_SUITE_P(mqtt_versions, downlink_policy_test, ::testing::Values(5, 3),
                         [](const ::testing::TestParamInfo<int>& p) {
                             return p.param == 5 ? std::string("mqtt5") : std::string("mqtt311");
                         });

// A downlink that a route sends up again reaches the cloud once, under the uplink tree, and does
// not come down again; an echo of the gateway's own uplink mirrored into down/ (a cloud bridge
// copying gateways/{gw}/devices/# into down/, properties included) is refused.
TEST_F(downlink_test, an_echo_of_the_uplink_is_refused_and_nothing_loops) {
    start_brokers();
    json c = downlink_config();
    c["local"]["subscribe"].push_back({{"filter", "devices/+/cmd/#"}, {"qos", 1}});
    c["routes"].push_back({{"from", "devices/+/cmd/#"}, {"to", {"cloud"}}});
    connect_cloud_subscriber({rejected_topic, cloud_topic("devices/+/cmd/#")});
    start_with(c);

    down("devices/d1/cmd/ping", "p1");
    ASSERT_TRUE(wait_local("devices/d1/cmd/ping"));
    auto up = cloud_sub_->wait_for(
        [](const received_message& m) { return m.topic == cloud_topic("devices/d1/cmd/ping"); },
        10s);
    ASSERT_TRUE(up) << "the relayed message was not uplinked by the route";
    ASSERT_TRUE(up->egw_gateway);

    // The bridge: the uplink, with its properties, back into down/.
    mqtt::async_client bridge(cloud_->uri(), "egw-it-echo-bridge", mqtt::create_options(5));
    bridge.connect(mqtt::connect_options_builder().mqtt_version(5).finalize())->wait();
    mqtt::properties props{{mqtt::property::USER_PROPERTY, "egw-gateway", *up->egw_gateway}};
    auto echo = mqtt::message_ptr_builder()
                    .topic(down_prefix + "devices/d1/cmd/ping")
                    .payload(up->payload)
                    .qos(1)
                    .properties(props)
                    .finalize();
    bridge.publish(echo)->wait();
    auto r = wait_rejection(down_prefix + "devices/d1/cmd/ping");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->value("reason", ""), "echo of the gateway's own uplink");
    bridge.disconnect()->wait();

    down("devices/d1/cmd/marker", "m");
    ASSERT_TRUE(cloud_sub_->wait_for(
        [](const received_message& m) { return m.topic == cloud_topic("devices/d1/cmd/marker"); },
        10s));
    EXPECT_EQ(local_count("devices/d1/cmd/ping"), 1u);
    size_t ups = 0;
    for (const auto& m : cloud_sub_->messages())
        ups += m.topic == cloud_topic("devices/d1/cmd/ping") ? 1 : 0;
    EXPECT_EQ(ups, 1u);
    EXPECT_EQ(json_at(*gateway_->status_json(), "downlink/rejected/loop"), 1);
}

// --check-config refuses a route whose uplink could land in down/ or the task topics.
TEST_F(downlink_test, check_config_refuses_a_route_that_could_loop) {
    make_brokers();
    json c = downlink_config();
    c["routes"].push_back({{"from", "down/#"}, {"to", {"cloud"}}});
    write_file(tmp_ / "loop.json", c.dump(2));
    auto r = run_gateway_cli({"--check-config", (tmp_ / "loop.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("routes[1].from"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("loop"), std::string::npos) << r.err;

    c = downlink_config();
    c["sinks"]["cloud"]["topic"] = "gateways/{gateway_id}/tasks/{topic}";
    c["routes"][0]["from"] = "+";
    write_file(tmp_ / "tasks.json", c.dump(2));
    r = run_gateway_cli({"--check-config", (tmp_ / "tasks.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("routes[0].from"), std::string::npos) << r.err;

    // The same routes are fine without a downlink (nothing comes down), and so is the usual
    // telemetry route with one.
    c.erase("downlink");
    write_file(tmp_ / "no-downlink.json", c.dump(2));
    r = run_gateway_cli({"--check-config", (tmp_ / "no-downlink.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    c = downlink_config();
    c["downlink"].erase("sink");  // exactly one mqtt sink: it is the one
    write_file(tmp_ / "ok.json", c.dump(2));
    r = run_gateway_cli({"--check-config", (tmp_ / "ok.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    c["downlink"]["sink"] = "nowhere";
    write_file(tmp_ / "bad-sink.json", c.dump(2));
    r = run_gateway_cli({"--check-config", (tmp_ / "bad-sink.json").string()}, tmp_.path());
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find("downlink.sink"), std::string::npos) << r.err;
}

// While the local broker is down, downlinks wait in the buffer; they are delivered, in order,
// once it is back.
TEST_F(downlink_test, downlinks_wait_in_the_buffer_while_the_local_broker_is_down) {
    start_brokers();
    connect_cloud_subscriber({rejected_topic});
    start_with(downlink_config());
    down("devices/d1/cmd/first", "0");
    ASSERT_TRUE(wait_local("devices/d1/cmd/first"));

    local_->stop();
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& s) { return json_at(s, "sinks/!downlink/connected") == false; }, 15s));
    for (int i = 1; i <= 5; ++i) down("devices/d1/cmd/queued", std::to_string(i));
    auto s = gateway_->wait_until(
        [](const json& st) {
            const json n = json_at(st, "sinks/!downlink/rows_waiting");
            return n.is_number() && n.get<int>() >= 5;
        },
        10s);
    ASSERT_TRUE(s) << gateway_->last_status();
    // The operator sees them waiting.
    auto cli = run_gateway_cli({"status", "-s", (gateway_->data_dir() / "control.sock").string()},
                               tmp_.path());
    EXPECT_EQ(cli.exit_code, 0) << cli.err;
    EXPECT_NE(cli.out.find("!downlink"), std::string::npos) << cli.out;

    local_->start();
    ASSERT_TRUE(local_sub_->wait_for(
        [](const received_message& m) {
            return m.topic == "devices/d1/cmd/queued" && m.payload == "5";
        },
        20s));
    std::vector<std::string> got;
    for (const auto& m : local_sub_->messages())
        if (m.topic == "devices/d1/cmd/queued") got.push_back(m.payload);
    // At least once, in order: a publish the broker took just before it stopped may come twice.
    ASSERT_GE(got.size(), 5u);
    std::vector<std::string> unique;
    for (const auto& p : got)
        if (unique.empty() || unique.back() != p) unique.push_back(p);
    EXPECT_EQ(unique, (std::vector<std::string>{"1", "2", "3", "4", "5"}));
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& st) { return json_at(st, "sinks/!downlink/rows_waiting") == 0; }, 10s));
    EXPECT_TRUE(rejections().empty());
}

// A task submitted by the cloud runs on a simulated device and its states come back to the
// cloud; a cancel from the cloud ends another; a malformed submit is answered.
TEST_F(downlink_test, tasks_from_the_cloud_run_on_a_device_and_can_be_canceled) {
    start_brokers();
    connect_cloud_subscriber({"gateways/#"});
    start_with(downlink_config());
    auto sim = child_process::spawn({EGW_DEVICE_SIM_BIN, "--uri", local_->uri(), "--id", "sim-1",
                                     "--type", "render", "--delay-ms", "300"},
                                    tmp_.path() / "sim.out", tmp_.path() / "sim.err");
    ASSERT_TRUE(
        gateway_->wait_until([](const json& s) { return json_at(s, "devices/online") == 1; }, 10s));
    auto states = [&](const std::string& task) {
        std::vector<std::string> out;
        for (const auto& m : cloud_sub_->messages())
            if (m.topic == cloud_topic("tasks/" + task + "/state"))
                out.push_back(json::parse(m.payload).value("state", ""));
        return out;
    };
    auto wait_state = [&](const std::string& task, const std::string& state) {
        return poll_until(
            [&] {
                for (const auto& s : states(task))
                    if (s == state) return true;
                return false;
            },
            15s, 20ms);
    };
    const std::string submit = std::string("gateways/") + k_gateway_id + "/tasks/submit";
    const std::string cancel = std::string("gateways/") + k_gateway_id + "/tasks/cancel";
    cloud_pub_->publish(submit, json{{"task", "ct1"}, {"type", "render"}, {"input", "f1"}}.dump());
    cloud_pub_->flush();
    ASSERT_TRUE(wait_state("ct1", "succeeded"));
    auto st = states("ct1");
    EXPECT_EQ(st.front(), "queued");
    json done;
    for (const auto& m : cloud_sub_->messages())
        if (m.topic == cloud_topic("tasks/ct1/state")) done = json::parse(m.payload);
    EXPECT_EQ(done.value("device", ""), "sim-1");
    EXPECT_EQ(done["result"].value("input", ""), "f1");

    // A task of a type no device runs waits queued; the cloud cancels it.
    cloud_pub_->publish(submit, json{{"task", "ct2"}, {"type", "nobody"}}.dump());
    cloud_pub_->flush();
    ASSERT_TRUE(wait_state("ct2", "queued"));
    cloud_pub_->publish(cancel, json{{"task", "ct2"}}.dump());
    cloud_pub_->flush();
    ASSERT_TRUE(wait_state("ct2", "canceled"));

    // A task running on a device: the cloud's cancel ends it and the device is told.
    auto slow = child_process::spawn({EGW_DEVICE_SIM_BIN, "--uri", local_->uri(), "--id", "sim-2",
                                      "--type", "slow", "--delay-ms", "60000"},
                                     tmp_.path() / "sim2.out", tmp_.path() / "sim2.err");
    ASSERT_TRUE(
        gateway_->wait_until([](const json& j) { return json_at(j, "devices/online") == 2; }, 10s));
    cloud_pub_->publish(submit, json{{"task", "ct3"}, {"type", "slow"}}.dump());
    cloud_pub_->flush();
    ASSERT_TRUE(wait_state("ct3", "accepted"));
    cloud_pub_->publish(cancel, json{{"task", "ct3"}}.dump());
    cloud_pub_->flush();
    ASSERT_TRUE(wait_state("ct3", "canceled"));
    ASSERT_TRUE(wait_local("devices/sim-2/tasks/ct3/cancel"));

    cloud_pub_->publish(submit, "not json");
    cloud_pub_->flush();
    auto r = wait_rejection(submit);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->value("reason", "").empty());
    auto s = gateway_->status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "downlink/tasks_received"), 6);
    EXPECT_EQ(json_at(*s, "devices/cloud_commands_rejected"), 1);
}

// SIGHUP adds the downlink to a running gateway (the connected cloud sink subscribes at once)
// and removes it again (it unsubscribes; nothing more is relayed).
TEST_F(downlink_test, reload_adds_and_removes_the_downlink) {
    start_brokers();
    connect_cloud_subscriber({rejected_topic});
    start_gateway(base_config());
    auto s = gateway_->status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "downlink/enabled"), false);
    EXPECT_TRUE(json_at(*s, "sinks/!downlink").is_null());

    gateway_->set_config(downlink_config());
    ASSERT_TRUE(gateway_->reload());
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& st) { return json_at(st, "downlink/subscribed") == true; }, 10s))
        << gateway_->last_status();
    local_sub_ = std::make_unique<test_subscriber>(local_->uri(), "egw-it-local-dev");
    local_sub_->connect({"devices/#"});
    cloud_pub_ = std::make_unique<test_publisher>(cloud_->uri(), "egw-it-cloud-pub");
    cloud_pub_->connect();
    down("devices/d1/cmd/after-reload", "1");
    ASSERT_TRUE(wait_local("devices/d1/cmd/after-reload"));

    gateway_->set_config(base_config());
    ASSERT_TRUE(gateway_->reload());
    ASSERT_TRUE(gateway_->wait_until(
        [](const json& st) {
            return json_at(st, "downlink/enabled") == false &&
                   json_at(st, "sinks/!downlink").is_null();
        },
        10s));
    down("devices/d1/cmd/after-removal", "2");
    // The uplink still works, and nothing came down: a telemetry message sent after the
    // downlink message reaches the cloud, and the downlink message never reached the site.
    auto& dev = connect_device();
    auto& up = connect_cloud_subscriber({cloud_topic("devices/+/telemetry/#")});
    dev.publish("devices/d1/telemetry/t", "x");
    dev.flush();
    ASSERT_TRUE(up.wait_for([](const received_message&) { return true; }, 10s));
    EXPECT_EQ(local_count("devices/d1/cmd/after-removal"), 0u);
    EXPECT_EQ(json_at(*gateway_->status_json(), "downlink/received"), 1);
}

}  // namespace
}  // namespace egw::test
