// SPDX-License-Identifier: Apache-2.0
//
// temp_dir: a private directory under /tmp that lives as long as the object.

#pragma once

#include <filesystem>
#include <string_view>

namespace egw::test {

// Creates a fresh directory /tmp/<prefix>-XXXXXX (mode 0700) and removes it with its contents on
// destruction, unless the environment variable EGW_KEEP_TMP is set (then its path is printed so a
// failed run can be inspected). Paths are kept short on purpose: the gateway's control socket
// lives in {data_dir}/control.sock and a unix socket path must fit in 108 bytes.
class temp_dir {
public:
    explicit temp_dir(std::string_view prefix = "egw");
    ~temp_dir();

    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    temp_dir(temp_dir&& other) noexcept;
    temp_dir& operator=(temp_dir&& other) noexcept;

    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

private:
    void remove() noexcept;

    std::filesystem::path path_;
};

// Writes `content` to `file`, replacing it; throws std::runtime_error on failure.
void write_file(const std::filesystem::path& file, std::string_view content);

// Reads a whole file; returns an empty string if it does not exist.
std::string read_file(const std::filesystem::path& file);

// The last `lines` lines of a file (for failure diagnostics).
std::string tail_file(const std::filesystem::path& file, std::size_t lines);

}  // namespace egw::test
