// SPDX-License-Identifier: Apache-2.0
#include "plugins/host/isolated_instance.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "edge-gateway/plugin.h"
#include "plugins/host/isolation_protocol.h"
#include "plugins/host/runtime_util.h"

extern char** environ;

namespace egw::plugins {
namespace {

using namespace isolation;

constexpr const char* kHostName = "edge-gateway-plugin-host";

std::string describe_status(int status) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char* d = sigdescr_np(sig);
        return "killed by signal " + std::to_string(sig) + " (" + (d ? d : "?") + ")";
    }
    if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
    return "stopped";
}

class isolated_instance final : public instance {
public:
    isolated_instance(const instance_spec& spec, isolation_options opts)
        : spec_(spec), opts_(std::move(opts)) {
        if (opts_.host_path.empty()) opts_.host_path = default_plugin_host_path();
        if (opts_.max_attempts == 0) opts_.max_attempts = 1;
        if (!shm_.create(kMinRegionBytes))
            throw std::runtime_error(std::string("memfd for plugin isolation: ") + strerror(errno));
        config_ = spec_.config.dump();
        call_result r = start();
        if (!r.ok()) throw std::runtime_error(r.reason);
    }
    ~isolated_instance() override { stop_child(); }

    bool heavy() const override { return true; }
    unsigned max_concurrent() const override { return 1; }
    bool stateful() const override { return stateful_; }
    uint64_t restarts() const override { return restarts_.load(std::memory_order_relaxed); }
    bool retry(const call_result& r, unsigned attempts) const override {
        return (r.failure == failure_kind::crashed || r.failure == failure_kind::timeout) &&
               attempts < opts_.max_attempts;
    }

    call_result on_message(const message_view& m) override {
        std::lock_guard lock(mu_);
        if (call_result r = ensure_child(); !r.ok()) return r;
        request q{};
        q.code = op::message;
        q.topic_len = uint32_t(m.topic.size());
        q.device_len = uint32_t(m.device_id.size());
        q.content_type_len = uint32_t(m.content_type.size());
        q.payload_len = m.payload.size();
        q.data_len = m.topic.size() + m.device_id.size() + m.content_type.size() + m.payload.size();
        q.ts_ms = m.ts_ms;
        q.seq = m.seq;
        q.qos = m.qos;
        if (!shm_.reserve(q.data_len))
            return {failure_kind::error,
                    "message of " + std::to_string(q.data_len) + " bytes does not fit the region",
                    {},
                    -1};
        writer w{shm_.data()};
        w.str(m.topic);
        w.str(m.device_id);
        w.str(m.content_type);
        w.str(m.payload);
        return exchange(q, call_timeout_ms(), nullptr);
    }

    call_result on_timer(int64_t now_ms) override {
        std::lock_guard lock(mu_);
        if (call_result r = ensure_child(); !r.ok()) return r;
        request q{};
        q.code = op::timer;
        q.ts_ms = now_ms;
        return exchange(q, call_timeout_ms(), nullptr);
    }

    call_result snapshot(std::string& state) override {
        std::lock_guard lock(mu_);
        state.clear();
        if (call_result r = ensure_child(); !r.ok()) return r;
        request q{};
        q.code = op::snapshot;
        call_result r = exchange(q, call_timeout_ms(), &state);
        if (r.ok()) last_state_ = state;
        return r;
    }

    call_result restore(std::string_view state) override {
        std::lock_guard lock(mu_);
        if (call_result r = ensure_child(); !r.ok()) return r;
        call_result r = send_restore(state, call_timeout_ms());
        if (r.ok()) last_state_ = std::string(state);
        return r;
    }

private:
    uint32_t call_timeout_ms() const { return spec_.limits.time_budget_ms + opts_.grace_ms; }

    // Spawns the child and gives it create() and, when a snapshot is cached, restore().
    call_result start() {
        std::string err;
        if (!spawn(err)) return {failure_kind::crashed, err, {}, -1};
        started_ns_ = runtime::monotonic_ns();
        request q{};
        q.code = op::create;
        q.name_len = uint32_t(spec_.name.size());
        q.path_len = uint32_t(spec_.path.size());
        q.data_len = spec_.name.size() + spec_.path.size() + config_.size();
        q.time_budget_ms = spec_.limits.time_budget_ms;
        q.max_output_bytes = spec_.limits.max_output_bytes;
        q.memory_cap_bytes = spec_.limits.memory_cap_bytes;
        if (!shm_.reserve(q.data_len)) return {failure_kind::error, "config too large", {}, -1};
        writer w{shm_.data()};
        w.str(spec_.name);
        w.str(spec_.path);
        w.str(config_);
        call_result r = exchange(q, opts_.start_timeout_ms, nullptr);
        if (r.ok() && last_state_) r = send_restore(*last_state_, opts_.start_timeout_ms);
        if (!r.ok() && pid_ > 0) stop_child();
        return r;
    }

    call_result send_restore(std::string_view state, uint32_t timeout_ms) {
        request q{};
        q.code = op::restore;
        q.data_len = state.size();
        if (!shm_.reserve(q.data_len)) return {failure_kind::error, "state too large", {}, -1};
        writer w{shm_.data()};
        w.str(state);
        return exchange(q, timeout_ms, nullptr);
    }

    // A live child, restarting a dead one once its backoff has passed.
    call_result ensure_child() {
        if (pid_ > 0) return {};
        int64_t wait_ns = next_start_ns_ - runtime::monotonic_ns();
        if (wait_ns > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait_ns));
        call_result r = start();
        if (!r.ok()) {
            r.reason = "restarting the plugin host: " + r.reason;
            if (r.failure == failure_kind::none) r.failure = failure_kind::crashed;
        }
        return r;
    }

    bool spawn(std::string& err) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
            err = std::string("socketpair: ") + strerror(errno);
            return false;
        }
        // Above the target numbers, so that the dup2()s to 3 and 4 cannot clobber each other.
        int child_sock = fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
        int child_shm = fcntl(shm_.fd(), F_DUPFD_CLOEXEC, 10);
        close(sv[1]);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, child_sock, kChildSocketFd);
        posix_spawn_file_actions_adddup2(&fa, child_shm, kChildShmFd);
        // The gateway blocks or handles signals its own way; the child starts clean.
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        std::string ppid = std::to_string(getpid());
        char* argv[] = {const_cast<char*>(opts_.host_path.c_str()), ppid.data(),
                        const_cast<char*>(spec_.name.c_str()), nullptr};
        pid_t pid = -1;
        int rc = posix_spawn(&pid, opts_.host_path.c_str(), &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        close(child_sock);
        close(child_shm);
        if (rc != 0) {
            close(sv[0]);
            err = "cannot start " + opts_.host_path + ": " + strerror(rc);
            return false;
        }
        pid_ = pid;
        sock_ = sv[0];
        return true;
    }

    // Closes the socket and kills and reaps the child; returns its wait status.
    int stop_child() {
        int status = 0;
        if (sock_ >= 0) close(sock_);
        sock_ = -1;
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
        }
        pid_ = -1;
        return status;
    }

    // The child failed a call (EOF, a broken socket, the deadline): kill, reap, count, log, and
    // set the time of the next start.
    call_result child_died(failure_kind kind, std::string why) {
        pid_t pid = pid_;
        int status = stop_child();
        uint64_t n = restarts_.fetch_add(1, std::memory_order_relaxed) + 1;
        int64_t now = runtime::monotonic_ns();
        if (now - started_ns_ >= int64_t(opts_.stable_after_ms) * 1'000'000) {
            backoff_ms_ = 0;
        } else {
            backoff_ms_ = backoff_ms_ == 0 ? opts_.min_backoff_ms
                                           : std::min(backoff_ms_ * 2, opts_.max_backoff_ms);
        }
        next_start_ns_ = now + int64_t(backoff_ms_) * 1'000'000;
        std::string reason =
            kind == failure_kind::timeout
                ? why + "; plugin host (pid " + std::to_string(pid) + ") killed"
                : "plugin host (pid " + std::to_string(pid) + ") " + describe_status(status);
        // Throttled: a plugin that crashes on every message would otherwise flood the log.
        if (n <= 10 || n % 100 == 0)
            runtime::plugin_log(spec_.name, EGW_LOG_ERROR,
                                reason + "; restart #" + std::to_string(n) + " in " +
                                    std::to_string(backoff_ms_) + " ms");
        return {kind, std::move(reason), {}, -1};
    }

    // Sends `q` (its bytes already in the region) and waits for the reply.
    call_result exchange(request& q, uint32_t timeout_ms, std::string* state_out) {
        q.region_size = shm_.size();
        if (!send_packet(sock_, &q, sizeof q))
            return child_died(failure_kind::crashed, "send to the plugin host failed");
        int64_t deadline = runtime::monotonic_ns() + int64_t(timeout_ms) * 1'000'000;
        alignas(8) char buf[sizeof(log_packet) + kMaxLogText];
        static_assert(sizeof buf >= sizeof(reply));
        for (;;) {
            int64_t left_ns = deadline - runtime::monotonic_ns();
            if (left_ns <= 0) break;
            pollfd p{sock_, POLLIN, 0};
            int pr = poll(&p, 1, int((left_ns + 999'999) / 1'000'000));
            if (pr < 0 && errno == EINTR) continue;
            if (pr == 0) break;
            ssize_t n = recv(sock_, buf, sizeof buf, MSG_DONTWAIT);
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
            if (n <= 0) return child_died(failure_kind::crashed, "EOF");
            packet kind{};
            std::memcpy(&kind, buf, sizeof kind);
            if (kind == packet::log && size_t(n) >= sizeof(log_packet)) {
                log_packet lp{};
                std::memcpy(&lp, buf, sizeof lp);
                runtime::plugin_log_line(lp.level,
                                         std::string_view(buf + sizeof lp, size_t(n) - sizeof lp));
                continue;
            }
            if (kind != packet::reply || size_t(n) != sizeof(reply))
                return child_died(failure_kind::crashed, "garbled reply");
            reply h{};
            std::memcpy(&h, buf, sizeof h);
            return decode_reply(h, state_out);
        }
        return child_died(failure_kind::timeout,
                          "no answer within " + std::to_string(timeout_ms) + " ms");
    }

    call_result decode_reply(const reply& h, std::string* state_out) {
        if (!shm_.remap(h.region_size) || h.data_len > shm_.size() ||
            h.failure < int32_t(failure_kind::none) || h.failure > int32_t(failure_kind::crashed))
            return child_died(failure_kind::crashed, "garbled reply");
        call_result r;
        r.failure = failure_kind(h.failure);
        r.timer_ms = h.timer_ms;
        reader rd{shm_.data(), shm_.data() + h.data_len};
        r.reason = rd.str(h.reason_len);
        if (state_out != nullptr) {
            *state_out = rd.str(size_t(rd.end - rd.p));
        } else if (!decode(rd, h.output_count, r.outputs)) {
            return child_died(failure_kind::crashed, "garbled outputs");
        }
        stateful_ = h.stateful != 0 || stateful_;
        return r;
    }

    instance_spec spec_;
    isolation_options opts_;
    std::string config_;
    std::mutex mu_;
    region shm_;
    pid_t pid_ = -1;
    int sock_ = -1;
    bool stateful_ = false;
    std::optional<std::string> last_state_;
    std::atomic<uint64_t> restarts_{0};
    int64_t started_ns_ = 0;
    int64_t next_start_ns_ = 0;
    uint32_t backoff_ms_ = 0;
};

}  // namespace

std::string default_plugin_host_path() {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        auto next = self.parent_path() / kHostName;
        if (access(next.c_str(), X_OK) == 0) return next.string();
    }
#ifdef EGW_PLUGIN_HOST_INSTALL_PATH
    if (access(EGW_PLUGIN_HOST_INSTALL_PATH, X_OK) == 0) return EGW_PLUGIN_HOST_INSTALL_PATH;
#endif
#ifdef EGW_PLUGIN_HOST_BUILD_PATH
    if (access(EGW_PLUGIN_HOST_BUILD_PATH, X_OK) == 0) return EGW_PLUGIN_HOST_BUILD_PATH;
#endif
    return kHostName;
}

std::unique_ptr<instance> make_isolated_instance(const instance_spec& spec,
                                                 isolation_options opts) {
    return std::make_unique<isolated_instance>(spec, std::move(opts));
}

}  // namespace egw::plugins
