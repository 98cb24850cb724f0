// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/curl_loop.h"

#include <vector>

namespace egw {

curl_loop::curl_loop(uv_loop_t* loop) : loop_(loop), multi_(curl_multi_init()) {
    static const bool global = [] { return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK; }();
    (void)global;
    timer_ = new uv_timer_t;
    uv_timer_init(loop_, timer_);
    timer_->data = this;
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &curl_loop::on_socket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &curl_loop::on_timer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
}

curl_loop::~curl_loop() {
    for (auto& [easy, done] : running_) curl_multi_remove_handle(multi_, easy);
    running_.clear();
    // Sockets curl still holds (its connection cache) are closed by the cleanup below, which
    // may call on_socket with CURL_POLL_REMOVE first: close our polls after it.
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, nullptr);
    curl_multi_cleanup(multi_);
    for (socket_ctx* ctx : std::set<socket_ctx*>(sockets_)) close_socket(ctx);
    uv_timer_stop(timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

void curl_loop::add(CURL* easy, std::function<void(CURLcode)> done) {
    running_[easy] = std::move(done);
    curl_multi_add_handle(multi_, easy);  // curl asks for a timeout through on_timer
}

void curl_loop::cancel(CURL* easy) {
    if (running_.erase(easy) > 0) curl_multi_remove_handle(multi_, easy);
}

void curl_loop::close_socket(socket_ctx* ctx) {
    sockets_.erase(ctx);
    uv_poll_stop(&ctx->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&ctx->poll),
             [](uv_handle_t* h) { delete static_cast<socket_ctx*>(h->data); });
}

int curl_loop::on_socket(CURL*, curl_socket_t s, int what, void* userp, void* socketp) {
    auto* self = static_cast<curl_loop*>(userp);
    auto* ctx = static_cast<socket_ctx*>(socketp);
    if (what == CURL_POLL_REMOVE) {
        if (ctx) {
            curl_multi_assign(self->multi_, s, nullptr);
            self->close_socket(ctx);
        }
        return 0;
    }
    if (!ctx) {
        ctx = new socket_ctx{{}, s, self};
        ctx->poll.data = ctx;
        uv_poll_init_socket(self->loop_, &ctx->poll, s);
        self->sockets_.insert(ctx);
        curl_multi_assign(self->multi_, s, ctx);
    }
    int events = 0;
    if (what != CURL_POLL_OUT) events |= UV_READABLE;
    if (what != CURL_POLL_IN) events |= UV_WRITABLE;
    uv_poll_start(&ctx->poll, events, [](uv_poll_t* h, int status, int ev) {
        auto* c = static_cast<socket_ctx*>(h->data);
        int flags = 0;
        if (status < 0) flags = CURL_CSELECT_ERR;
        if (ev & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (ev & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
        c->self->action(c->fd, flags);
    });
    return 0;
}

int curl_loop::on_timer(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<curl_loop*>(userp);
    if (timeout_ms < 0) {
        uv_timer_stop(self->timer_);
        return 0;
    }
    // 0 means "now": still go through the loop, curl must not be re-entered from here.
    uv_timer_start(
        self->timer_,
        [](uv_timer_t* t) { static_cast<curl_loop*>(t->data)->action(CURL_SOCKET_TIMEOUT, 0); },
        static_cast<uint64_t>(timeout_ms), 0);
    return 0;
}

void curl_loop::action(curl_socket_t s, int events) {
    int still = 0;
    curl_multi_socket_action(multi_, s, events, &still);
    collect();
}

void curl_loop::collect() {
    std::vector<std::pair<std::function<void(CURLcode)>, CURLcode>> finished;
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi_, &left)) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL* easy = m->easy_handle;
        const CURLcode rc = m->data.result;
        auto it = running_.find(easy);
        curl_multi_remove_handle(multi_, easy);
        if (it == running_.end()) continue;
        finished.emplace_back(std::move(it->second), rc);
        running_.erase(it);
    }
    // After the scan: a `done` may add the next transfer or destroy nothing of ours.
    for (auto& [done, rc] : finished) done(rc);
}

}  // namespace egw
