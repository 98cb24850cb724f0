// SPDX-License-Identifier: Apache-2.0

#include "support/temp_dir.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace egw::test {

temp_dir::temp_dir(std::string_view prefix) {
    std::string pattern = "/tmp/" + std::string(prefix) + "-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
    }
    path_ = buf.data();
}

temp_dir::~temp_dir() { remove(); }

temp_dir::temp_dir(temp_dir&& other) noexcept : path_(std::move(other.path_)) {
    other.path_.clear();
}

temp_dir& temp_dir::operator=(temp_dir&& other) noexcept {
    if (this != &other) {
        remove();
        path_ = std::move(other.path_);
        other.path_.clear();
    }
    return *this;
}

void temp_dir::remove() noexcept {
    if (path_.empty()) {
        return;
    }
    if (std::getenv("EGW_KEEP_TMP") != nullptr) {
        std::cerr << "[egw-test] keeping " << path_.string() << "\n";
    } else {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    path_.clear();
}

void write_file(const std::filesystem::path& file, std::string_view content) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    out.close();
    if (!out) {
        throw std::runtime_error("cannot write " + file.string());
    }
}

std::string read_file(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        return {};
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string tail_file(const std::filesystem::path& file, std::size_t lines) {
    const std::string all = read_file(file);
    std::size_t pos = all.size();
    if (pos > 0 && all[pos - 1] == '\n') {
        --pos;
    }
    for (std::size_t seen = 0; pos > 0; --pos) {
        if (all[pos - 1] == '\n' && ++seen == lines) {
            break;
        }
    }
    return all.substr(pos);
}

}  // namespace egw::test
