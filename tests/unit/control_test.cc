// SPDX-License-Identifier: Apache-2.0
// The control socket's request/response protocol, with a real libuv loop on its own thread.
#include "gateway/control.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <filesystem>
#include <thread>

#include <unistd.h>

namespace {

class control_test : public ::testing::Test {
protected:
    void SetUp() override {
        path_ = "/tmp/egw-ctl-" + std::to_string(::getpid()) + ".sock";
        uv_loop_init(&loop_);
        uv_async_init(&loop_, &stop_, [](uv_async_t* a) {
            auto* self = static_cast<control_test*>(a->data);
            self->server_->stop();
            uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
        });
        stop_.data = this;
        server_ = std::make_unique<egw::control_server>(&loop_);
        server_->on_sync("echo", [](const nlohmann::json& req) {
            return nlohmann::json{{"echo", req.value("text", "")}};
        });
        server_->on("later", [this](const nlohmann::json&, egw::control_server::respond_fn r) {
            later_ = std::move(r);
            uv_timer_init(&loop_, &timer_);
            timer_.data = this;
            uv_timer_start(
                &timer_,
                [](uv_timer_t* t) {
                    auto* self = static_cast<control_test*>(t->data);
                    self->later_({{"done", true}});
                    uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
                },
                10, 0);
        });
        ASSERT_EQ(server_->start(path_), 0);
        thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
    }
    void TearDown() override {
        uv_async_send(&stop_);
        thread_.join();
        server_.reset();
        uv_run(&loop_, UV_RUN_DEFAULT);
        uv_loop_close(&loop_);
        EXPECT_FALSE(std::filesystem::exists(path_));
    }

    std::string path_;
    uv_loop_t loop_{};
    uv_async_t stop_{};
    uv_timer_t timer_{};
    egw::control_server::respond_fn later_;
    std::unique_ptr<egw::control_server> server_;
    std::thread thread_;
};

TEST_F(control_test, answers_a_registered_command) {
    auto reply = egw::control_request(path_, {{"cmd", "echo"}, {"text", "hi"}});
    EXPECT_EQ(reply["echo"], "hi");
}

TEST_F(control_test, answers_later_from_the_loop) {
    auto reply = egw::control_request(path_, {{"cmd", "later"}});
    EXPECT_EQ(reply["done"], true);
}

TEST_F(control_test, names_an_unknown_command) {
    auto reply = egw::control_request(path_, {{"cmd", "nope"}});
    EXPECT_EQ(reply["error"], "unknown command 'nope'");
}

TEST_F(control_test, refuses_a_request_without_cmd) {
    auto reply = egw::control_request(path_, {{"text", "x"}});
    EXPECT_EQ(reply["error"], "request needs a \"cmd\" string");
}

TEST(control_client, says_why_when_no_gateway_answers) {
    EXPECT_THROW(egw::control_request("/tmp/egw-no-such.sock", {{"cmd", "status"}}),
                 std::runtime_error);
}

}  // namespace
