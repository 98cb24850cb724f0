// SPDX-License-Identifier: Apache-2.0
//
// child_process: one spawned program, owned; killed and reaped on destruction.

#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace egw::test {

// Owns a child started with fork + execv. The child gets /dev/null as stdin, stdout and stderr
// appended to the given files, no other inherited descriptors (the test's own MQTT sockets must
// not leak into a broker or the gateway), and PR_SET_PDEATHSIG so it dies with the test even if
// the test itself crashes. The destructor sends SIGKILL and reaps, so no test leaves a process
// behind, whatever assertion failed.
class child_process {
public:
    child_process() = default;
    ~child_process();

    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;
    child_process(child_process&& other) noexcept;
    child_process& operator=(child_process&& other) noexcept;

    // Starts argv[0] (an absolute path) with arguments. Throws std::system_error if fork fails;
    // if exec fails, the child exits with 127.
    static child_process spawn(const std::vector<std::string>& argv,
                               const std::filesystem::path& stdout_file,
                               const std::filesystem::path& stderr_file);

    pid_t pid() const { return pid_; }

    // True while the child has not exited (reaps it if it has).
    bool running();

    // Sends a signal; false if the child is not running.
    bool send_signal(int sig);

    // Waits up to `timeout` for the child to exit. Returns its exit code, or 128 + signal number
    // if a signal ended it; std::nullopt if it is still running at the deadline.
    std::optional<int> wait_for_exit(std::chrono::milliseconds timeout);

    // SIGKILL and reap; no-op if there is no child.
    void kill_and_reap() noexcept;

    // The exit code recorded once the child was reaped.
    std::optional<int> exit_code() const { return exit_code_; }

private:
    bool try_reap(bool block) noexcept;

    pid_t pid_ = -1;
    std::optional<int> exit_code_;
};

// Result of a short-lived command run to completion.
struct command_result {
    int exit_code = -1;  // -1: did not finish before the timeout (then it was killed)
    std::string out;
    std::string err;
};

// Runs a command to completion with a deadline, capturing stdout and stderr through files in
// `work_dir` named after `tag` (removed afterwards; concurrent calls need distinct tags).
command_result run_command(const std::vector<std::string>& argv,
                           const std::filesystem::path& work_dir, const std::string& tag,
                           std::chrono::milliseconds timeout);

}  // namespace egw::test
