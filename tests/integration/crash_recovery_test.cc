// SPDX-License-Identifier: Apache-2.0
//
// Crash safety: kill -9 of the gateway with a backlog on disk, and kill -9 in the middle of a
// fast QoS 1 stream. Nothing the gateway took from the local broker may be lost; duplicates are
// allowed (at least once) and reported.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

class crash_recovery_test : public gateway_test {
protected:
    struct stream_outcome {
        int kills = 0;
        std::size_t lost = 0;
    };

    // The publisher keeps streaming at full speed while the gateway is killed and restarted at
    // once, several times. The local session is persistent, so the local broker keeps
    // everything the gateway did not acknowledge.
    stream_outcome kill9_during_stream(const std::string& commit, const std::string& device) {
        constexpr std::size_t k_count = 6000;
        const std::vector<std::size_t> kill_points{1000, 2500, 4000};

        start_brokers();
        json config = base_config();
        config["buffer"]["commit"] = commit;
        auto& gw = start_gateway(config);
        connect_cloud_subscriber();
        auto& dev = connect_device(32);
        const std::string topic = "devices/" + device + "/telemetry/x";

        std::atomic<bool> publish_failed{false};
        std::string publish_error;
        // jthread: joined even if the kill loop below throws.
        std::jthread publisher([&] {
            try {
                for (std::size_t i = 0; i < k_count; ++i) {
                    dev.publish(topic, numbered_payload(device, i));
                }
                dev.flush(30s);
            } catch (const std::exception& e) {
                publish_error = e.what();
                publish_failed = true;
            }
        });

        stream_outcome out;
        for (const auto point : kill_points) {
            if (!poll_until([&] { return dev.acked() >= point || publish_failed; }, 30s)) {
                ADD_FAILURE() << "publisher stalled at " << dev.acked();
                break;
            }
            gw.kill9();
            ++out.kills;
            if (!gw.start_and_wait_ready()) {
                ADD_FAILURE() << "gateway did not restart after kill " << out.kills;
                break;
            }
        }
        publisher.join();
        EXPECT_FALSE(publish_failed) << publish_error;

        std::set<std::string> expected;
        for (std::size_t i = 0; i < k_count; ++i) {
            expected.insert(device + ":" + std::to_string(i));
        }
        // Everything, or (group commit may lose some) until the buffer is empty and nothing new
        // arrived for 3 s.
        std::size_t last_unique = 0;
        auto last_growth = std::chrono::steady_clock::now();
        poll_until(
            [&] {
                const auto r = check_delivery(data_messages(), expected);
                if (r.missing.empty()) return true;
                if (r.unique != last_unique) {
                    last_unique = r.unique;
                    last_growth = std::chrono::steady_clock::now();
                    return false;
                }
                const auto st = gw.status_json();
                return st && json_at(*st, "buffer/rows") == 0 &&
                       std::chrono::steady_clock::now() - last_growth > 3s;
            },
            60s, 50ms);
        const auto report = check_delivery(data_messages(), expected);
        std::cout << "[ info ] kill -9 x" << out.kills << " during stream (" << commit
                  << " commit): published " << k_count << ", received " << report.total
                  << ", unique " << report.unique << ", duplicates " << report.duplicates
                  << ", LOST " << report.missing.size() << "\n";
        for (std::size_t i = 0; i < report.missing.size() && i < 10; ++i) {
            std::cout << "[ info ]   lost " << report.missing[i] << "\n";
        }
        RecordProperty("lost", static_cast<int>(report.missing.size()));
        RecordProperty("duplicates", static_cast<int>(report.duplicates));
        out.lost = report.missing.size();
        return out;
    }
};

TEST_F(crash_recovery_test, Kill9WithBacklogThenRestartLosesNothing) {
    constexpr int k_count = 2000;
    start_brokers();
    auto& gw = start_gateway();
    connect_cloud_subscriber();
    auto& dev = connect_device(128);

    cloud_->stop();
    ASSERT_TRUE(wait_sink_state("offline", 15s)) << gw.last_status();

    std::set<std::string> expected;
    for (int i = 0; i < k_count; ++i) {
        dev.publish("devices/k1/telemetry/x", numbered_payload("k1", i));
        expected.insert("k1:" + std::to_string(i));
    }
    dev.flush(30s);
    ASSERT_TRUE(
        gw.wait_until([&](const json& s) { return json_at(s, "buffer/rows") == k_count; }, 30s))
        << "backlog not in the buffer; status " << gw.last_status();

    gw.kill9();
    cloud_->start();
    ASSERT_TRUE(gw.start_and_wait_ready()) << tail_file(gw.log_file(), 20);

    const bool all = wait_for_unique(expected, 60s);
    const auto msgs = data_messages();
    const auto report = check_delivery(msgs, expected);
    std::cout << "[ info ] kill -9 with backlog: received " << report.total << ", unique "
              << report.unique << ", duplicates " << report.duplicates << ", lost "
              << report.missing.size() << "\n";
    RecordProperty("duplicates", static_cast<int>(report.duplicates));
    EXPECT_TRUE(all) << report.missing.size() << " messages lost, first "
                     << (report.missing.empty() ? "" : report.missing.front());

    // Same (egw-gateway, egw-seq) must always mean the same message: a seq is never reused.
    std::map<std::uint64_t, std::string> by_seq;
    for (const auto& m : msgs) {
        const auto seq = parse_seq(m.egw_seq);
        ASSERT_TRUE(seq) << "missing egw-seq on " << m.payload;
        auto [it, fresh] = by_seq.try_emplace(*seq, m.payload);
        EXPECT_EQ(it->second, m.payload) << "seq " << *seq << " used for two messages";
    }
}

// Commit "each": the gateway acknowledges a message only after committing it (Paho C >= 1.3.10
// sends the PUBACK after the callback returns), so nothing may be missing.
TEST_F(crash_recovery_test, Kill9DuringFastQos1StreamLosesNothing) {
    const auto out = kill9_during_stream("each", "k2");
    EXPECT_EQ(out.lost, 0u)
        << "a message the local broker had handed over was lost: acknowledged before its commit";
}

// Commit "group" trades that for speed: what is queued for the writer at the kill is lost. The
// queue is bounded (4096 messages, plus one transaction of at most 512), and with a 32-message
// publisher window far less is in it; this measures it.
TEST_F(crash_recovery_test, Kill9DuringStreamWithGroupCommitLosesAtMostTheQueue) {
    const auto out = kill9_during_stream("group", "k3");
    EXPECT_LE(out.lost, static_cast<std::size_t>(out.kills) * (4096 + 512));
}

TEST_F(crash_recovery_test, GracefulRestartWithBacklogLosesNothing) {
    constexpr int k_count = 500;
    start_brokers();
    auto& gw = start_gateway();
    connect_cloud_subscriber();
    auto& dev = connect_device();

    cloud_->stop();
    ASSERT_TRUE(wait_sink_state("offline", 15s)) << gw.last_status();
    std::set<std::string> expected;
    for (int i = 0; i < k_count; ++i) {
        dev.publish("devices/k3/telemetry/x", numbered_payload("k3", i));
        expected.insert("k3:" + std::to_string(i));
    }
    dev.flush();
    ASSERT_TRUE(
        gw.wait_until([&](const json& s) { return json_at(s, "buffer/rows") == k_count; }, 20s))
        << gw.last_status();
    const auto exit = gw.terminate();
    ASSERT_EQ(exit.exit_code, 0);

    cloud_->start();
    ASSERT_TRUE(gw.start_and_wait_ready());
    EXPECT_TRUE(wait_for_unique(expected, 30s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
}

}  // namespace
}  // namespace egw::test
