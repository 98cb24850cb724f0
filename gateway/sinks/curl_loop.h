// SPDX-License-Identifier: Apache-2.0
// libcurl's multi interface driven by the libuv loop, after curl's docs/examples/multi-uv.c:
// curl_multi_socket_action is called from one uv_poll per socket curl opens and one uv_timer
// for curl's timeouts. No thread per transfer: every callback, including `done`, runs on the
// loop thread.
//
// Ownership. The caller owns each easy handle and keeps it (and whatever it points to: body,
// header list) alive until `done` ran or cancel() returned. Destroying the curl_loop cancels
// every transfer without calling `done`. uv handles are freed in their close callbacks, so the
// loop must run once more after destruction (the gateway's destructor does).
#pragma once

#include <curl/curl.h>
#include <uv.h>

#include <functional>
#include <map>
#include <set>

namespace egw {

class curl_loop {
public:
    explicit curl_loop(uv_loop_t* loop);
    ~curl_loop();
    curl_loop(const curl_loop&) = delete;
    curl_loop& operator=(const curl_loop&) = delete;

    // Starts `easy`; `done` gets curl's result once it finished (on the loop).
    void add(CURL* easy, std::function<void(CURLcode)> done);
    // Stops `easy` if it is running; `done` is not called.
    void cancel(CURL* easy);

private:
    struct socket_ctx {
        uv_poll_t poll;
        curl_socket_t fd;
        curl_loop* self;
    };

    static int on_socket(CURL* easy, curl_socket_t s, int what, void* userp, void* socketp);
    static int on_timer(CURLM* multi, long timeout_ms, void* userp);
    void action(curl_socket_t s, int events);
    void collect();
    void close_socket(socket_ctx* ctx);

    uv_loop_t* loop_;
    CURLM* multi_;
    uv_timer_t* timer_;  // heap: freed in its close callback, which may run after we are gone
    std::map<CURL*, std::function<void(CURLcode)>> running_;
    std::set<socket_ctx*> sockets_;
};

}  // namespace egw
