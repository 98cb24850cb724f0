// SPDX-License-Identifier: Apache-2.0
// The downlink relay without brokers: messages as Paho hands them over, a real buffer file, and
// what the relay stored for the local broker or answered to the cloud. Covers the run-time loop
// guard, which a config that passes --check-config never exercises.
#include "gateway/devices/relay.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <uv.h>

#include <filesystem>

#include "gateway/devices/downlink_config.h"

namespace egw::devices {
namespace {

class relay_test : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (std::filesystem::temp_directory_path() / "egw-relay-XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        dir_ = tmpl;
        storage::buffer_options o;
        o.path = (dir_ / "buffer.db").string();
        buf_ = std::make_unique<storage::buffer>(o);
        cloud_bit_ = buf_->sink_bit("cloud");
        uv_loop_init(&loop_);
        relay_ = std::make_unique<downlink_relay>(&loop_, "g", *buf_,
                                                  [](uint64_t, const storage::incoming&) {});
        config c;
        c.gateway_id = "g";
        sink_config cloud;
        cloud.name = "cloud";
        cloud.topic = "gateways/{gateway_id}/{topic}";
        c.sinks.emplace("cloud", cloud);
        // A route that --check-config would refuse: what comes down on loop/x goes up to
        // gateways/g/down/loop/x.
        c.routes.push_back(route{"down/#", {"cloud"}, {}, false, {}});
        c.downlink =
            downlink_config{"cloud", {{"down/#", 1, 1024, false}, {"a/#", 0, 1024, false}}};
        std::map<int, std::unique_ptr<sink>> none;
        relay_->configure(c, none);
        local_bit_ = buf_->sink_bit(downlink_sink_name);
    }
    void TearDown() override {
        relay_->close();
        uv_run(&loop_, UV_RUN_DEFAULT);
        relay_.reset();
        uv_loop_close(&loop_);
        buf_.reset();
        std::filesystem::remove_all(dir_);
    }

    void deliver(const std::string& topic, const std::string& payload, int qos = 1,
                 MQTTProperties* props = nullptr) {
        MQTTAsync_message m = MQTTAsync_message_initializer;
        m.payload = const_cast<char*>(payload.data());
        m.payloadlen = static_cast<int>(payload.size());
        m.qos = qos;
        if (props) m.properties = *props;
        relay_->on_message(cloud_bit_, topic, m);
    }
    std::vector<storage::stored_row> rows(int bit) {
        std::vector<storage::stored_row> out;
        buf_->read(bit, 0, 100, 1 << 20, out);
        return out;
    }

    std::filesystem::path dir_;
    std::unique_ptr<storage::buffer> buf_;
    uv_loop_t loop_{};
    std::unique_ptr<downlink_relay> relay_;
    int cloud_bit_ = -1, local_bit_ = -1;
};

TEST_F(relay_test, stores_allowed_downlinks_with_their_capped_qos) {
    deliver("gateways/g/down/a/b", "hello", 1);
    auto local = rows(local_bit_);
    ASSERT_EQ(local.size(), 1u);
    EXPECT_EQ(local[0].topic, "0:a/b");  // capped at the entry's QoS 0
    EXPECT_EQ(local[0].payload, "hello");
    EXPECT_TRUE(rows(cloud_bit_).empty());
    EXPECT_EQ(relay_->status()["buffered"], 1);
}

TEST_F(relay_test, refuses_what_a_route_would_send_back_down) {
    deliver("gateways/g/down/down/x", "p");
    EXPECT_TRUE(rows(local_bit_).empty());
    auto answers = rows(cloud_bit_);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(answers[0].topic, "downlink/rejected");
    auto a = nlohmann::json::parse(answers[0].payload);
    EXPECT_EQ(a["topic"], "gateways/g/down/down/x");
    EXPECT_EQ(a["reason"].get<std::string>().rfind("would loop", 0), 0u) << a.dump();
    EXPECT_EQ(relay_->status()["rejected"]["loop"], 1);
}

TEST_F(relay_test, refuses_an_echo_of_the_gateways_own_uplink) {
    // The property list on the stack, as Paho hands it over: MQTTProperties_add would allocate
    // through Paho's heap tracking, which keeps its records until the library is torn down.
    MQTTProperty p{};
    p.identifier = MQTTPROPERTY_CODE_USER_PROPERTY;
    p.value.data = {11, const_cast<char*>("egw-gateway")};
    p.value.value = {1, const_cast<char*>("g")};
    MQTTProperties props = MQTTProperties_initializer;
    props.count = props.max_count = 1;
    props.array = &p;
    deliver("gateways/g/down/a/b", "p", 1, &props);
    EXPECT_TRUE(rows(local_bit_).empty());
    auto answers = rows(cloud_bit_);
    ASSERT_EQ(answers.size(), 1u);
    EXPECT_EQ(nlohmann::json::parse(answers[0].payload)["reason"],
              "echo of the gateway's own uplink");
}

TEST_F(relay_test, task_commands_go_to_the_loop_and_nothing_is_stored) {
    std::vector<downlink_relay::task_command> got;
    relay_->on_task = [&](const downlink_relay::task_command& t) { got.push_back(t); };
    deliver("gateways/g/tasks/submit", R"({"task":"t"})");
    deliver("gateways/g/tasks/cancel", R"({"task":"t"})");
    uv_run(&loop_, UV_RUN_NOWAIT);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_TRUE(got[0].submit);
    EXPECT_FALSE(got[1].submit);
    EXPECT_TRUE(rows(local_bit_).empty());
    EXPECT_TRUE(rows(cloud_bit_).empty());
}

}  // namespace
}  // namespace egw::devices
