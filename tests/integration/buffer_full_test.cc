// SPDX-License-Identifier: Apache-2.0
//
// A full buffer under each when_full policy, with the cloud down: drop-oldest keeps the newest
// rows, drop-newest keeps the oldest, block drops nothing and delivers all once the cloud is
// back. buffer.bytes never exceeds max_bytes.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

// Each row is topic + payload = 22 + 978 = 1000 bytes (with the original topic; more if the
// gateway stores the cloud topic), so max_bytes holds at most 20 rows.
constexpr const char* k_topic = "devices/d1/telemetry/x";
constexpr std::size_t k_payload_size = 978;
constexpr std::int64_t k_max_bytes = 20000;
constexpr int k_count = 100;

class buffer_full_test : public gateway_test {
protected:
    // Brokers up, subscriber's persistent session registered, then cloud down and gateway up.
    void set_up(const std::string& policy, const std::string& commit = "each") {
        start_brokers();
        connect_cloud_subscriber({std::string("gateways/") + k_gateway_id + "/devices/#"});
        cloud_->stop();
        json cfg = base_config();
        cfg["buffer"]["max_bytes"] = k_max_bytes;
        cfg["buffer"]["when_full"] = policy;
        cfg["buffer"]["commit"] = commit;
        start_gateway(cfg);
        connect_device();
    }

    // Publishes k_count numbered messages while sampling status; returns the largest
    // buffer.bytes seen.
    std::int64_t publish_and_sample() {
        std::atomic<std::int64_t> max_seen{0};
        // jthread: stopped and joined on every way out of this function, exceptions included.
        std::jthread sampler([&](const std::stop_token& stop) {
            while (!stop.stop_requested()) {
                if (const auto s = gateway_->status_json()) {
                    const auto b = json_at(*s, "buffer/bytes");
                    if (b.is_number()) {
                        max_seen = std::max(max_seen.load(), b.get<std::int64_t>());
                    }
                }
            }
        });
        for (int i = 0; i < k_count; ++i) {
            device_->publish(k_topic, numbered_payload("d1", i, k_payload_size));
        }
        device_->flush();
        // Let the gateway take in what it will, sampling meanwhile.
        gateway_->wait_until(
            [](const json& s) {
                return json_at(s, "counters/received") == k_count ||
                       json_int(s, "buffer/bytes", 0) + 1000 > k_max_bytes;
            },
            10s);
        sampler.request_stop();
        sampler.join();
        if (const auto s = gateway_->status_json()) {
            max_seen = std::max(max_seen.load(), json_int(*s, "buffer/bytes", 0));
        }
        return max_seen.load();
    }

    // The numbers (n of "d1:n") that reached the cloud, first arrivals in order.
    std::vector<std::uint64_t> delivered_numbers() {
        std::vector<std::uint64_t> out;
        std::set<std::uint64_t> seen;
        for (const auto& m : data_messages()) {
            if (const auto id = parse_numbered(m.payload); id && seen.insert(id->second).second) {
                out.push_back(id->second);
            }
        }
        return out;
    }

    // Cloud back; waits until the sink is online with nothing waiting, and until at least
    // `expect_at_least` messages arrived. False if the buffer did not drain.
    bool restore_cloud_and_drain(std::size_t expect_at_least) {
        cloud_->start();
        const auto online_and_empty = [](const json& s) {
            return json_at(s, "sinks/cloud/state") == "online" && json_at(s, "buffer/rows") == 0;
        };
        const bool drained = gateway_->wait_until(online_and_empty, 30s).has_value();
        if (!drained) {
            ADD_FAILURE() << "buffer did not drain after the cloud returned; "
                          << gateway_->last_status();
            return false;
        }
        poll_until([&] { return delivered_numbers().size() >= expect_at_least; }, 15s);
        return true;
    }

    // A drop policy, a buffer far too small for the stream, the cloud down: every message is
    // either kept or counted as dropped, the byte cap holds, and what was kept is delivered once
    // the cloud returns. Returns the delivered sequence numbers.
    std::vector<std::uint64_t> run_drop_policy(const char* policy) {
        set_up(policy);
        const auto max_bytes_seen = publish_and_sample();
        EXPECT_LE(max_bytes_seen, k_max_bytes) << "buffer.bytes exceeded max_bytes";

        const auto st = gateway_->wait_until(
            [](const json& s) { return json_at(s, "counters/received") == k_count; }, 10s);
        if (!st) {
            ADD_FAILURE() << gateway_->last_status();
            return {};
        }
        const auto rows = json_int(*st, "buffer/rows");
        const auto dropped = json_int(*st, "counters/dropped/buffer_full");
        std::cout << "[ info ] " << policy << ": rows kept " << rows << ", dropped " << dropped
                  << "\n";
        EXPECT_GE(rows, 1);
        EXPECT_LE(rows, 20);
        EXPECT_EQ(rows + dropped, k_count);

        if (!restore_cloud_and_drain(static_cast<std::size_t>(rows))) {
            ADD_FAILURE() << "the kept rows were not delivered";
            return {};
        }
        auto got = delivered_numbers();
        EXPECT_EQ(got.size(), static_cast<std::size_t>(rows));
        return got;
    }

    // when_full=block: nothing dropped, order kept, the cap holds; with either commit mode
    // (group commit holds the rest of its batch and the queue behind it).
    void run_block(const std::string& commit) {
        set_up("block", commit);
        const auto max_bytes_seen = publish_and_sample();
        EXPECT_LE(max_bytes_seen, k_max_bytes) << "buffer.bytes exceeded max_bytes";

        ASSERT_TRUE(restore_cloud_and_drain(k_count));
        // The local broker held what the gateway did not accept; once the buffer drains, the
        // rest flows through.
        poll_until([&] { return delivered_numbers().size() >= static_cast<std::size_t>(k_count); },
                   30s);
        const auto all = delivered_numbers();
        EXPECT_EQ(all.size(), static_cast<std::size_t>(k_count)) << "block must not lose messages";
        for (std::size_t i = 0; i < all.size(); ++i) {
            EXPECT_EQ(all[i], i) << "block must keep order";
            if (all[i] != i) {
                break;
            }
        }
        const auto st = gateway_->status_json();
        ASSERT_TRUE(st);
        EXPECT_EQ(json_at(*st, "counters/dropped/buffer_full"), 0) << st->dump();
        EXPECT_LE(json_int(*st, "buffer/bytes"), k_max_bytes);
    }
};

TEST_F(buffer_full_test, DropOldestKeepsNewestRowsAndCountsDrops) {
    const auto got = run_drop_policy("drop-oldest");
    const auto rows = static_cast<std::int64_t>(got.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(static_cast<std::int64_t>(got[i]), k_count - rows + static_cast<std::int64_t>(i))
            << "drop-oldest must keep the newest rows, in order";
    }
}

TEST_F(buffer_full_test, DropNewestKeepsOldestRowsAndCountsDrops) {
    const auto got = run_drop_policy("drop-newest");
    for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i], i) << "drop-newest must keep the oldest rows, in order";
    }
}

TEST_F(buffer_full_test, BlockDropsNothingAndDeliversAllAfterCloudReturns) { run_block("each"); }

TEST_F(buffer_full_test, BlockWithGroupCommitDropsNothingAndKeepsOrder) { run_block("group"); }

}  // namespace
}  // namespace egw::test
