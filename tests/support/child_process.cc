// SPDX-License-Identifier: Apache-2.0

#include "support/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

#include "support/net.h"
#include "support/temp_dir.h"

namespace egw::test {

child_process::~child_process() { kill_and_reap(); }

child_process::child_process(child_process&& other) noexcept
    : pid_(other.pid_), exit_code_(other.exit_code_) {
    other.pid_ = -1;
}

child_process& child_process::operator=(child_process&& other) noexcept {
    if (this != &other) {
        kill_and_reap();
        pid_ = other.pid_;
        exit_code_ = other.exit_code_;
        other.pid_ = -1;
    }
    return *this;
}

child_process child_process::spawn(const std::vector<std::string>& argv,
                                   const std::filesystem::path& stdout_file,
                                   const std::filesystem::path& stderr_file) {
    // Everything the child touches is prepared before fork: after fork in a multi-threaded
    // process (Paho runs threads) only async-signal-safe calls are allowed.
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    const std::string out_path = stdout_file.string();
    const std::string err_path = stderr_file.string();
    const pid_t parent = ::getpid();

    const pid_t pid = ::fork();
    if (pid < 0) {
        throw std::system_error(errno, std::generic_category(), "fork");
    }
    if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) {
            ::_exit(127);
        }
        const int in = ::open("/dev/null", O_RDONLY);
        const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        const int err = out_path == err_path
                            ? out
                            : ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || out < 0 || err < 0) {
            ::_exit(127);
        }
        ::dup2(in, STDIN_FILENO);
        ::dup2(out, STDOUT_FILENO);
        ::dup2(err, STDERR_FILENO);
        ::close_range(3, ~0U, 0);
        sigset_t none;
        ::sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    child_process child;
    child.pid_ = pid;
    return child;
}

bool child_process::try_reap(bool block) noexcept {
    if (pid_ <= 0) {
        return true;
    }
    int status = 0;
    pid_t r;
    do {
        r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        return false;
    }
    if (r == pid_) {
        if (WIFEXITED(status)) {
            exit_code_ = WEXITSTATUS(status);
        } else if (WIFSIGNALED(status)) {
            exit_code_ = 128 + WTERMSIG(status);
        }
    }
    pid_ = -1;
    return true;
}

bool child_process::running() { return pid_ > 0 && !try_reap(false); }

bool child_process::send_signal(int sig) { return running() && ::kill(pid_, sig) == 0; }

std::optional<int> child_process::wait_for_exit(std::chrono::milliseconds timeout) {
    if (!poll_until([this] { return !running(); }, timeout, 5ms)) {
        return std::nullopt;
    }
    return exit_code_;
}

void child_process::kill_and_reap() noexcept {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        try_reap(true);
    }
}

command_result run_command(const std::vector<std::string>& argv,
                           const std::filesystem::path& work_dir, const std::string& tag,
                           std::chrono::milliseconds timeout) {
    const auto out_file = work_dir / (tag + ".out");
    const auto err_file = work_dir / (tag + ".err");
    std::filesystem::remove(out_file);
    std::filesystem::remove(err_file);
    child_process child = child_process::spawn(argv, out_file, err_file);
    command_result result;
    const auto code = child.wait_for_exit(timeout);
    child.kill_and_reap();
    result.exit_code = code.value_or(-1);
    result.out = read_file(out_file);
    result.err = read_file(err_file);
    std::filesystem::remove(out_file);
    std::filesystem::remove(err_file);
    return result;
}

}  // namespace egw::test
