// SPDX-License-Identifier: Apache-2.0
// The plugin stage keeps an output's content type and user properties on its row
// (storage/row_props.h), and hands the input row's content type to the plugin: the real stage,
// a real Lua instance, a real SQLite file, on a real libuv loop.
#include <gtest/gtest.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "gateway/work_pool.h"
#include "plugins/host/runtimes.h"
#include "plugins/host/stage.h"
#include "storage/buffer.h"

namespace egw::plugins {
namespace {

using storage::row_props;
using storage::stored_row;

class stage_props_test : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/egw-stage-props-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        register_builtin_runtimes();
        uv_loop_init(&loop_);
    }
    void TearDown() override {
        uv_loop_close(&loop_);
        std::filesystem::remove_all(dir_);
    }

    std::string write_script(const std::string& text) {
        const std::string path = dir_ + "/props.lua";
        std::ofstream(path) << text;
        return path;
    }

    std::string dir_;
    uv_loop_t loop_{};
};

TEST_F(stage_props_test, outputs_keep_content_type_and_user_properties_in_order) {
    storage::buffer_options o;
    o.path = dir_ + "/buffer.db";
    storage::buffer buf(o);
    const int out_bit = buf.sink_bit("out");

    std::mutex mu;
    std::vector<stored_row> live;
    work_pool pool(&loop_, 2);
    auto st = std::make_unique<stage>(pool, buf, [&](uint64_t seq, const storage::incoming& in) {
        std::lock_guard lock(mu);
        live.push_back(storage::to_stored_row(seq, in));
    });
    stage_instance_def def;
    def.name = "tag";
    def.plugin = def.path = write_script(R"lua(
        function on_message(msg)
            emit { suffix = "/thumbnail", payload = "JPEG", content_type = "image/jpeg",
                   properties = { ["egw-episode"] = "e-1" } }
            -- What the plugin saw of the input's content type, and an output without one.
            emit { suffix = "/seen", payload = msg.content_type or "none" }
        end
    )lua");
    def.config = nlohmann::json::object();
    stage_route r;
    r.from = "devices/+/camera/#";
    r.via = {"tag"};
    r.sinks = uint64_t{1} << out_bit;
    st->configure({def}, {r});

    row_props in_props;
    in_props.content_type = "image/jpeg";
    ASSERT_EQ(buf.append("devices/c1/camera/front", "frame", uint64_t{1} << st->bit(), 1000,
                         nullptr, &in_props)
                  .status,
              storage::append_status::stored);

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    auto outputs = [&] {
        std::lock_guard lock(mu);
        return live.size();
    };
    while (outputs() < 2 && std::chrono::steady_clock::now() < deadline) {
        st->pump();
        uv_run(&loop_, UV_RUN_ONCE);
    }
    while (st->busy()) uv_run(&loop_, UV_RUN_ONCE);
    ASSERT_EQ(outputs(), 2u);

    row_props thumb;
    thumb.content_type = "image/jpeg";
    thumb.user_properties = {{"egw-episode", "e-1"}};
    // Live rows (what the sinks get at once) and the rows read back agree.
    std::vector<stored_row> rows;
    buf.read(out_bit, 0, 10, SIZE_MAX, rows);
    ASSERT_EQ(rows.size(), 2u);
    for (const auto* set : {&live, &rows}) {
        EXPECT_EQ((*set)[0].topic, "devices/c1/camera/front/thumbnail");
        EXPECT_EQ((*set)[0].props, thumb);
        EXPECT_EQ((*set)[1].topic, "devices/c1/camera/front/seen");
        EXPECT_EQ((*set)[1].payload, "image/jpeg");  // the input row's content type
        EXPECT_TRUE((*set)[1].props.empty());
    }
    st->stop();
    pool.close();
    st.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);  // the pool's wake-up handle is freed in its close callback
}

}  // namespace
}  // namespace egw::plugins
