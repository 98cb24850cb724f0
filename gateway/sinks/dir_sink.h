// SPDX-License-Identifier: Apache-2.0
// The `dir` sink, the embedded default: each batch becomes a file under `path`, named like the
// S3 keys, written under `path/.tmp/`, fsynced and renamed into place, so a file under its
// final name is always complete. With `object_key`, binary payloads become files of their own,
// written the same way before the batch file that points to them. `max_bytes` caps the
// directory: the oldest files (in the order they were written; at start-up by modification
// time) are removed and counted. A full disk is state "error", retried, never a crash. All file
// I/O runs on the libuv worker pool.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "gateway/sinks/batch_sink.h"

namespace egw {

struct dir_options : batch_options {
    std::string path;
    uint64_t max_bytes = 0;  // 0: no cap
};

void parse_dir_sink(const nlohmann::json& s, const std::string& path, const config& c,
                    sink_config& out, std::vector<config_problem>& problems);
std::unique_ptr<sink> make_dir_sink(const sink_context& ctx);

class dir_sink final : public batch_sink {
public:
    dir_sink(const sink_context& ctx, const dir_options& opts);

protected:
    void start_upload(const upload& u) override;
    bool marks_uploaded_itself() const override { return true; }
    void add_status(nlohmann::json& j) override;

private:
    // The files under path, owned by the one job running at a time: relative name -> size and
    // age (a write counter), and the names by age, oldest first.
    struct index {
        bool scanned = false;
        std::map<std::string, std::pair<uint64_t, uint64_t>> files;
        std::set<std::pair<uint64_t, std::string>> by_age;
        uint64_t bytes = 0, age = 0;
        void put(const std::string& name, uint64_t size);
    };

    dir_options opts_;
    std::shared_ptr<index> index_ = std::make_shared<index>();
    uint64_t files_written_ = 0, files_removed_ = 0, dir_bytes_ = 0;
};

}  // namespace egw
