// SPDX-License-Identifier: Apache-2.0
// The `dir` sink, the embedded default: each batch becomes a file under `path`, named like the
// S3 keys, written under `path/.tmp/`, fsynced and renamed into place, so a file under its
// final name is always complete. `max_bytes` caps the directory: the oldest files (by name,
// which sorts by time and sequence) are removed and counted. A full disk is state "error",
// retried, never a crash. All file I/O runs on the libuv worker pool.
#pragma once

#include <map>
#include <memory>
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
    // The files under path (relative name -> size), owned by the one job running at a time.
    struct index {
        bool scanned = false;
        std::map<std::string, uint64_t> files;
        uint64_t bytes = 0;
    };

    dir_options opts_;
    std::shared_ptr<index> index_ = std::make_shared<index>();
    uint64_t files_written_ = 0, files_removed_ = 0, dir_bytes_ = 0;
};

}  // namespace egw
