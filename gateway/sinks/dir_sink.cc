// SPDX-License-Identifier: Apache-2.0
#include "gateway/sinks/dir_sink.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <tuple>
#include <vector>

#include "gateway/log.h"

namespace egw {
namespace {

namespace fs = std::filesystem;

struct write_error {
    int err;
    std::string what;
};

void fsync_dir(const fs::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

// Writes `body` to `tmp`, fsyncs it and renames it to `final`. Throws write_error.
void write_atomically(const fs::path& tmp, const fs::path& final, const std::string& body) {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) throw write_error{errno, "cannot create " + tmp.string()};
    size_t off = 0;
    while (off < body.size()) {
        const ssize_t n = ::write(fd, body.data() + off, body.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int e = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            throw write_error{e, "writing " + tmp.string()};
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) {
        const int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw write_error{e, "fsync of " + tmp.string()};
    }
    ::close(fd);
    if (::rename(tmp.c_str(), final.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw write_error{e, "renaming to " + final.string()};
    }
    fsync_dir(final.parent_path());
}

}  // namespace

void parse_dir_sink(const nlohmann::json& s, const std::string& path, const config&,
                    sink_config& out, std::vector<config_problem>& problems) {
    auto o = std::make_shared<dir_options>();
    o->limits.max_delay = std::chrono::milliseconds(60000);
    // Local disk: CPU, not bytes, is what a drain to it runs short of (docs/sinks.md).
    o->compression_level = 1;
    parse_batch_options(s, path, *o, problems);
    parse_object_key(s, path, *o, problems);
    o->path = s.at("path").get<std::string>();
    o->max_bytes = s.value("max_bytes", uint64_t{0});
    if (o->path.empty() || o->path.front() != '/') {
        problems.push_back({path + ".path", "must be an absolute path"});
    }
    out.options = std::move(o);
}

std::unique_ptr<sink> make_dir_sink(const sink_context& ctx) {
    return std::make_unique<dir_sink>(ctx, static_cast<const dir_options&>(*ctx.cfg.options));
}

dir_sink::dir_sink(const sink_context& ctx, const dir_options& opts)
    : batch_sink(ctx, opts), opts_(opts) {}

void dir_sink::index::put(const std::string& name, uint64_t size) {
    auto [it, fresh] = files.try_emplace(name, 0, 0);
    if (!fresh) {
        bytes -= it->second.first;
        by_age.erase({it->second.second, name});
    }
    it->second = {size, ++age};
    by_age.insert({age, name});
    bytes += size;
}

void dir_sink::start_upload(const upload& u) {
    struct result {
        upload_outcome outcome = upload_outcome::ok;
        std::string error;
        uint64_t removed = 0, dir_bytes = 0;
    };
    auto r = std::make_shared<result>();
    run_job(
        [r, u, idx = index_, store = store(), root = fs::path(opts_.path), cap = opts_.max_bytes] {
            try {
                if (!idx->scanned) {
                    std::error_code ec;
                    fs::create_directories(root, ec);
                    // Oldest first by modification time (then name), as they were written.
                    std::vector<std::tuple<fs::file_time_type, std::string, uint64_t>> found;
                    for (auto it = fs::recursive_directory_iterator(root, ec);
                         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
                        if (it->path().filename() == ".tmp") {
                            it.disable_recursion_pending();
                            continue;
                        }
                        if (!it->is_regular_file()) continue;
                        found.emplace_back(it->last_write_time(),
                                           fs::relative(it->path(), root).string(),
                                           it->file_size());
                    }
                    std::sort(found.begin(), found.end());
                    for (const auto& [mtime, name, size] : found) idx->put(name, size);
                    idx->scanned = true;
                }
                const fs::path tmp_dir = root / ".tmp";
                fs::create_directories(tmp_dir);
                const uint64_t written_after = idx->age;
                auto put = [&](const std::string& key, const std::string& body) {
                    const fs::path final = root / key;
                    fs::create_directories(final.parent_path());
                    std::string tmp_name = key;
                    for (char& c : tmp_name) {
                        if (c == '/') c = '_';
                    }
                    write_atomically(tmp_dir / tmp_name, final, body);
                    idx->put(key, body.size());
                };
                // Objects first: a batch file never points to a file that is not there yet.
                for (const auto& o : u.objects) put(o.key, *o.body);
                put(u.key, *u.body);
                store->mark_uploaded(u.first_seq);
                // The oldest go first; the files just written always stay.
                while (cap > 0 && idx->bytes > cap && !idx->by_age.empty()) {
                    const auto oldest = *idx->by_age.begin();
                    if (oldest.first > written_after) break;
                    std::error_code ec;
                    fs::remove(root / oldest.second, ec);
                    idx->bytes -= idx->files[oldest.second].first;
                    idx->files.erase(oldest.second);
                    idx->by_age.erase(idx->by_age.begin());
                    ++r->removed;
                }
                r->dir_bytes = idx->bytes;
            } catch (const write_error& e) {
                r->outcome = upload_outcome::local;
                r->error = e.what + ": " + std::strerror(e.err);
            } catch (const std::exception& e) {
                r->outcome = upload_outcome::local;
                r->error = e.what();
            }
        },
        [this, r] {
            if (r->outcome == upload_outcome::ok) {
                ++files_written_;
                files_removed_ += r->removed;
                dir_bytes_ = r->dir_bytes;
                if (r->removed > 0) {
                    log::get("sink")->info("{}: removed {} oldest file(s) to stay under {} bytes",
                                           cfg_.name, r->removed, opts_.max_bytes);
                }
            }
            upload_done(r->outcome, r->error);
        });
}

void dir_sink::add_status(nlohmann::json& j) {
    j["path"] = opts_.path;
    j["files_written"] = files_written_;
    j["files_removed"] = files_removed_;
    j["dir_bytes"] = dir_bytes_;
}

}  // namespace egw
