// SPDX-License-Identifier: Apache-2.0
// The plugin stage on its own (plugins/host/stage.h): a real SQLite buffer in a temp dir, the
// gateway's work_pool on a real libuv loop, and real fixture .so plugins (tests/plugins/).
// Batching, one transaction per batch (outputs + release of the inputs + snapshot), failure
// kinds -> dead letters (on_timer included), and restore after a restart.
#include "plugins/host/stage.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "gateway/work_pool.h"
#include "plugins/host/runtimes.h"

namespace egw::plugins {
namespace {

using nlohmann::json;

std::string fixture(const std::string& name) { return std::string(EGW_PLUGIN_DIR) + "/" + name; }

class stage_test : public ::testing::Test {
protected:
    void SetUp() override {
        register_builtin_runtimes();
        char tmpl[] = "/tmp/egw-stage-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        opts_.path = dir_ + "/buffer.db";
        uv_loop_init(&loop_);
        open();
    }
    void TearDown() override {
        close();
        uv_run(&loop_, UV_RUN_DEFAULT);
        uv_loop_close(&loop_);
        std::filesystem::remove_all(dir_);
    }

    // A gateway start: buffer, pool and stage (a restart is close() + open()).
    void open() {
        buf_ = std::make_unique<storage::buffer>(opts_);
        cloud_ = buf_->sink_bit("cloud");
        pool_ = std::make_unique<work_pool>(&loop_, 2);
        stage_ = std::make_unique<stage>(*pool_, *buf_,
                                         [this](uint64_t seq, const storage::incoming& row) {
                                             std::lock_guard lock(mu_);
                                             posted_.push_back(storage::to_stored_row(seq, row));
                                         });
        buf_->set_sinks_in_use((uint64_t{1} << cloud_) | (uint64_t{1} << stage_->bit()));
    }
    void close() {
        if (!stage_) return;
        drive();
        stage_->stop();
        pool_->close();
        stage_.reset();
        pool_.reset();
        buf_.reset();
    }

    void configure(const std::vector<std::pair<std::string, std::string>>& chain,
                   json config = json::object()) {
        std::vector<stage_instance_def> defs;
        stage_route r;
        r.index = 0;
        r.from = "devices/+/t";
        r.sinks = uint64_t{1} << cloud_;
        for (const auto& [name, so] : chain) {
            stage_instance_def d;
            d.name = name;
            d.plugin = so;
            d.path = fixture(so);
            d.config = config;
            defs.push_back(d);
            r.via.push_back(name);
        }
        stage_->configure(defs, {r});
    }

    void add(const std::string& payload, const std::string& topic = "devices/d1/t") {
        // As the gateway does: the stored row also reaches the stage live (the mailbox).
        std::vector<storage::stored_row> live;
        auto r = buf_->append(topic, payload, uint64_t{1} << stage_->bit(), 1000,
                              [&](uint64_t seq, const storage::incoming& row) {
                                  live.push_back(storage::to_stored_row(seq, row));
                              });
        ASSERT_EQ(r.status, storage::append_status::stored);
        for (const auto& row : live) stage_->on_live(row);
    }

    // Runs batches until the stage has nothing left to do (or 10 s pass).
    void drive() {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            stage_->pump();
            if (!stage_->busy()) break;
            while (stage_->busy()) uv_run(&loop_, UV_RUN_ONCE);
        }
    }

    json stage_status() { return stage_->status(); }

    // Rows waiting for the cloud sink, in order.
    std::vector<storage::stored_row> cloud_rows() {
        std::vector<storage::stored_row> rows;
        buf_->read(cloud_, 0, 100000, SIZE_MAX, rows);
        return rows;
    }

    std::string dir_;
    storage::buffer_options opts_;
    uv_loop_t loop_{};
    std::unique_ptr<storage::buffer> buf_;
    std::unique_ptr<work_pool> pool_;
    std::unique_ptr<stage> stage_;
    int cloud_ = 0;
    std::mutex mu_;
    std::vector<storage::stored_row> posted_;
};

TEST_F(stage_test, RowsGoThroughInBatchesOfAtMost512InOrder) {
    configure({{"c", "egw_fx_counter.so"}});
    for (int i = 0; i < 1200; ++i) add("{\"v\":" + std::to_string(i) + "}");
    drive();
    const json st = stage_status();
    EXPECT_EQ(st["stage"]["rows_in"], 1200);
    EXPECT_EQ(st["stage"]["outputs"], 1200);
    EXPECT_EQ(st["stage"]["batches"], 3);  // 512 + 512 + 176: one transaction each
    EXPECT_EQ(st["stage"]["rows_waiting"], 0);
    auto rows = cloud_rows();
    ASSERT_EQ(rows.size(), 1200u);
    for (size_t i = 0; i < rows.size(); ++i) {
        EXPECT_EQ(rows[i].topic, "devices/d1/t/count");
        EXPECT_EQ(json::parse(rows[i].payload)["count"], i + 1) << i;
    }
    std::lock_guard lock(mu_);
    EXPECT_EQ(posted_.size(), 1200u);  // each output handed to the sinks once, in order
    for (size_t i = 1; i < posted_.size(); ++i) EXPECT_LT(posted_[i - 1].seq, posted_[i].seq);
}

// A batch whose commit fails leaves no trace (no output, inputs still waiting, old snapshot);
// the retry commits it exactly once.
TEST_F(stage_test, OutputsReleaseAndSnapshotCommitInOneTransaction) {
    configure({{"c", "egw_fx_counter.so"}});
    for (int i = 0; i < 3; ++i) add("x");
    drive();
    ASSERT_EQ(cloud_rows().size(), 3u);

    // Make the next commit fail half-way: a trigger refuses the second output row.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(opts_.path.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TRIGGER fail_once BEFORE INSERT ON messages WHEN "
                           "instr(NEW.payload, CAST('\"count\":5,' AS BLOB)) > 0 "
                           "BEGIN SELECT RAISE(ABORT, 'injected'); END;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    for (int i = 0; i < 3; ++i) add("x");
    stage_->pump();
    while (stage_->busy()) uv_run(&loop_, UV_RUN_ONCE);
    json st = stage_status();
    EXPECT_EQ(st["stage"]["commit_errors"], 1);
    EXPECT_EQ(cloud_rows().size(), 3u);                 // not even count 4
    EXPECT_EQ(st["stage"]["rows_waiting"], 3);          // inputs not released
    EXPECT_EQ(buf_->plugin_states().at(0).state, "3");  // snapshot as before the batch

    ASSERT_EQ(sqlite3_exec(db, "DROP TRIGGER fail_once", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
    // The failed batch is retried as is (after its delay), not run through the plugin again.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (stage_status()["stage"]["rows_waiting"] != 0 &&
           std::chrono::steady_clock::now() < deadline) {
        uv_sleep(20);
        drive();
    }
    auto rows = cloud_rows();
    ASSERT_EQ(rows.size(), 6u);
    for (size_t i = 0; i < rows.size(); ++i)
        EXPECT_EQ(json::parse(rows[i].payload)["count"], i + 1);
    EXPECT_EQ(buf_->plugin_states().at(0).state, "6");
}

TEST_F(stage_test, EachFailureKindBecomesADeadLetterAndTheRestFlows) {
    std::vector<stage_instance_def> defs;
    std::vector<stage_route> routes;
    int i = 0;
    for (const char* so : {"egw_fx_error.so", "egw_fx_throws.so", "egw_fx_bad_output.so"}) {
        stage_instance_def d;
        d.name = std::string("i") + std::to_string(i);
        d.plugin = so;
        d.path = fixture(so);
        defs.push_back(d);
        stage_route r;
        r.index = i;
        r.from = "devices/" + std::to_string(i) + "/t";
        r.via = {d.name};
        r.sinks = uint64_t{1} << cloud_;
        routes.push_back(r);
        ++i;
    }
    stage_->configure(defs, routes);
    add("good", "devices/0/t");
    add("bad", "devices/0/t");
    add("good", "devices/1/t");
    add("bad", "devices/1/t");
    add("empty", "devices/2/t");
    drive();
    auto letters = buf_->dead_letters(0, 100);
    ASSERT_EQ(letters.size(), 3u);
    EXPECT_EQ(letters[0].kind, "error");
    EXPECT_EQ(letters[0].instance, "i0");
    EXPECT_EQ(letters[0].seq, 2u);
    EXPECT_EQ(letters[0].payload, "bad");
    EXPECT_EQ(letters[1].kind, "exception");
    EXPECT_EQ(letters[1].seq, 4u);
    EXPECT_EQ(letters[2].kind, "bad_output");
    EXPECT_EQ(letters[2].topic, "devices/2/t");
    auto rows = cloud_rows();
    ASSERT_EQ(rows.size(), 2u);  // the two good messages
    EXPECT_EQ(rows[0].topic, "devices/0/t/out");
    const json st = stage_status();
    EXPECT_EQ(st["stage"]["rows_waiting"], 0);  // dead letters release their input too
    EXPECT_EQ(st["instances"]["i0"]["errors"]["error"], 1);
    EXPECT_EQ(st["instances"]["i1"]["errors"]["exception"], 1);
    EXPECT_EQ(st["instances"]["i2"]["dead_letters"], 1);
}

// on_timer failing is a failure like any other: counted, dead-lettered, and the replay of the
// letter fires the timer again, which then flushes exactly what it held.
TEST_F(stage_test, FailingTimerIsDeadLetteredAndItsReplayFiresItAgain) {
    configure({{"t", "egw_fx_timer.so"}}, {{"fails", 1}});
    add("a");
    add("b");
    drive();
    auto letters = buf_->dead_letters(0, 100);
    ASSERT_EQ(letters.size(), 1u);
    EXPECT_EQ(letters[0].instance, "t");
    EXPECT_EQ(letters[0].kind, "error");
    EXPECT_EQ(letters[0].seq, 0u);
    EXPECT_EQ(letters[0].route, 0);
    EXPECT_NE(letters[0].reason.find("on_timer"), std::string::npos);
    EXPECT_TRUE(cloud_rows().empty());
    json st = stage_status();
    EXPECT_EQ(st["instances"]["t"]["errors"]["error"], 1);
    EXPECT_EQ(st["instances"]["t"]["dead_letters"], 1);
    EXPECT_EQ(buf_->plugin_states().at(0).state, "2,1");  // the count is kept, not lost

    bool replayed = false;
    stage_->replay(letters, [&](size_t n, std::string error) {
        EXPECT_EQ(n, 1u);
        EXPECT_EQ(error, "");
        replayed = true;
    });
    while (stage_->busy()) uv_run(&loop_, UV_RUN_ONCE);
    drive();
    EXPECT_TRUE(replayed);
    EXPECT_EQ(buf_->dead_letter_count(), 0);
    auto rows = cloud_rows();
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].topic, "timer/out");
    EXPECT_EQ(rows[0].payload, "{\"flushed\":2}");
}

TEST_F(stage_test, ARestartRestoresTheCommittedSnapshotAndGoesOn) {
    configure({{"c", "egw_fx_counter.so"}});
    for (int i = 0; i < 10; ++i) add("x");
    drive();
    close();
    open();
    for (int i = 0; i < 5; ++i) add("y");
    configure({{"c", "egw_fx_counter.so"}});
    drive();
    auto rows = cloud_rows();
    ASSERT_EQ(rows.size(), 15u);
    for (size_t i = 0; i < rows.size(); ++i)
        EXPECT_EQ(json::parse(rows[i].payload)["count"], i + 1) << i;
    // Another config is another state: it starts fresh instead of restoring.
    close();
    open();
    add("z");
    configure({{"c", "egw_fx_counter.so"}}, {{"changed", true}});
    drive();
    rows = cloud_rows();
    ASSERT_EQ(rows.size(), 16u);
    EXPECT_EQ(json::parse(rows.back().payload)["count"], 1);
}

}  // namespace
}  // namespace egw::plugins
