// SPDX-License-Identifier: Apache-2.0
//
// The `dir` sink end to end: the real daemon, a real local Mosquitto, files on disk read back
// here with zlib. Every row lands exactly once, files appear whole under their final name,
// kill -9 in the middle of writing never doubles a row, the cap removes the oldest files, and a
// full disk is state "error", not a crash.

#include <sys/mount.h>
#include <unistd.h>
#include <zlib.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "integration/gateway_test_fixture.h"

namespace egw::test {
namespace {

namespace fs = std::filesystem;

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string gunzip(const std::string& data) {
    z_stream z{};
    if (inflateInit2(&z, 15 + 16) != Z_OK) throw std::runtime_error("inflateInit2");
    std::string out;
    char buf[65536];
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z.avail_in = static_cast<uInt>(data.size());
    int rc;
    do {
        z.next_out = reinterpret_cast<Bytef*>(buf);
        z.avail_out = sizeof buf;
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) {
            inflateEnd(&z);
            throw std::runtime_error("not a complete gzip stream");
        }
        out.append(buf, sizeof buf - z.avail_out);
    } while (rc != Z_STREAM_END);
    inflateEnd(&z);
    return out;
}

// The XFL byte of a gzip header (RFC 1952): zlib writes 4 for level 1, 2 for level 9, else 0.
int gzip_xfl(const fs::path& p) {
    const std::string d = read_file(p);
    return d.size() > 8 ? static_cast<unsigned char>(d[8]) : -1;
}

struct archive {
    std::map<uint64_t, int> seq_count;         // seq -> how many lines carry it
    std::map<std::string, int> payload_count;  // payload identity -> count
    std::vector<std::string> files;            // relative names
    std::vector<std::string> problems;
};

// Reads every file under `root` (not .tmp/) the way a consumer would.
archive read_archive(const fs::path& root, bool gzip = true) {
    archive a;
    if (!fs::exists(root)) return a;
    const std::regex name(R"(gw-it/\d{4}/\d{2}/\d{2}/(\d{20})-(\d{20})\.ndjson(\.gz)?)");
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        if (it->path().filename() == ".tmp") {
            it.disable_recursion_pending();
            continue;
        }
        if (!it->is_regular_file()) continue;
        const std::string rel = fs::relative(it->path(), root).string();
        a.files.push_back(rel);
        std::smatch m;
        if (!std::regex_match(rel, m, name)) {
            a.problems.push_back("unexpected name " + rel);
            continue;
        }
        const uint64_t first = std::stoull(m[1]), last = std::stoull(m[2]);
        std::string text;
        try {
            text = gzip ? gunzip(read_file(it->path())) : read_file(it->path());
        } catch (const std::exception& e) {
            a.problems.push_back(rel + ": " + e.what());
            continue;
        }
        std::istringstream lines(text);
        std::string line;
        while (std::getline(lines, line)) {
            json j = json::parse(line, nullptr, false);
            if (j.is_discarded() || !j.contains("seq")) {
                a.problems.push_back(rel + ": bad line " + line);
                continue;
            }
            const uint64_t seq = j["seq"].get<uint64_t>();
            if (seq < first || seq > last) a.problems.push_back(rel + ": seq out of range");
            if (j["gateway"] != k_gateway_id) a.problems.push_back(rel + ": gateway");
            if (!j["ts_ms"].is_number_integer()) a.problems.push_back(rel + ": ts_ms");
            ++a.seq_count[seq];
            if (j.contains("payload") && j["payload"].is_string()) {
                ++a.payload_count[j["payload"].get<std::string>()];
            }
        }
    }
    return a;
}

class dir_sink_test : public gateway_test {
protected:
    fs::path archive_dir() const { return tmp_.path() / "archive"; }

    json dir_config(json sink_extra = json::object()) {
        json c = base_config();
        json sink = {{"type", "dir"},
                     {"path", archive_dir().string()},
                     {"batch", {{"max_rows", 200}, {"max_delay_ms", 300}}}};
        sink.update(sink_extra);
        c["sinks"] = {{"archive", sink}};
        c["routes"] = json::array({{{"from", k_telemetry_filter}, {"to", {"archive"}}}});
        return c;
    }

    void publish_n(test_publisher& dev, const std::string& device, size_t from, size_t n,
                   size_t min_size = 0) {
        for (size_t i = from; i < from + n; ++i) {
            dev.publish("devices/" + device + "/telemetry/t",
                        numbered_payload(device, i, min_size));
        }
        dev.flush(30s);
    }

    bool wait_drained(std::chrono::milliseconds timeout) {
        return gateway_
            ->wait_until(
                [](const json& s) {
                    return json_at(s, "sinks/archive/rows_waiting") == 0 &&
                           json_at(s, "sinks/archive/batch_in_flight").is_null();
                },
                timeout)
            .has_value();
    }

    static void expect_exactly_once(const archive& a, const std::string& device, size_t n,
                                    size_t min_size = 0) {
        EXPECT_TRUE(a.problems.empty()) << a.problems.front();
        size_t missing = 0, doubled = 0;
        for (size_t i = 0; i < n; ++i) {
            auto it = a.payload_count.find(numbered_payload(device, i, min_size));
            if (it == a.payload_count.end()) {
                ++missing;
            } else if (it->second != 1) {
                ++doubled;
            }
        }
        EXPECT_EQ(missing, 0u);
        EXPECT_EQ(doubled, 0u);
        for (const auto& [seq, count] : a.seq_count) {
            EXPECT_EQ(count, 1) << "seq " << seq << " is in " << count << " lines";
        }
    }
};

TEST_F(dir_sink_test, EveryRowLandsOnceInCompleteGzipFilesNamedLikeTheKeys) {
    start_brokers();
    auto& gw = start_gateway(dir_config());
    auto& dev = connect_device();
    publish_n(dev, "d1", 0, 1000);
    ASSERT_TRUE(wait_drained(30s));
    const archive a = read_archive(archive_dir());
    expect_exactly_once(a, "d1", 1000);
    EXPECT_GE(a.files.size(), 5u) << "max_rows 200 cuts at least 5 files";
    // compression_level defaults to 1 for dir: zlib marks such a stream "fastest" (XFL 4).
    for (const auto& f : a.files) EXPECT_EQ(gzip_xfl(archive_dir() / f), 4) << f;
    EXPECT_TRUE(fs::is_empty(archive_dir() / ".tmp"));
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_EQ(json_at(*s, "sinks/archive/rows_uploaded"), 1000);
    EXPECT_EQ(json_at(*s, "sinks/archive/state"), "online");
    EXPECT_GT(json_at(*s, "sinks/archive/bytes_uploaded").get<int64_t>(), 0);
}

TEST_F(dir_sink_test, CompressionLevelNineIsUsedAndReadsBackTheSame) {
    start_brokers();
    start_gateway(dir_config({{"compression_level", 9}}));
    auto& dev = connect_device();
    publish_n(dev, "d9", 0, 300);
    ASSERT_TRUE(wait_drained(30s));
    const archive a = read_archive(archive_dir());
    expect_exactly_once(a, "d9", 300);
    ASSERT_FALSE(a.files.empty());
    for (const auto& f : a.files) EXPECT_EQ(gzip_xfl(archive_dir() / f), 2) << f;
}

TEST_F(dir_sink_test, UncompressedFilesAndTheCapRemovesTheOldest) {
    start_brokers();
    auto& gw = start_gateway(dir_config({{"compression", "none"},
                                         {"max_bytes", 20000},
                                         {"batch", {{"max_rows", 50}, {"max_delay_ms", 100}}}}));
    auto& dev = connect_device();
    publish_n(dev, "d2", 0, 1000, 100);
    ASSERT_TRUE(wait_drained(30s));
    const archive a = read_archive(archive_dir(), false);
    EXPECT_TRUE(a.problems.empty()) << a.problems.front();
    uint64_t bytes = 0;
    for (const auto& f : a.files) bytes += fs::file_size(archive_dir() / f);
    EXPECT_LE(bytes, 20000u + 50 * 250);  // the newest file always stays
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_GT(json_at(*s, "sinks/archive/files_removed").get<int64_t>(), 0);
    // What is left is the newest rows.
    EXPECT_EQ(a.payload_count.count(numbered_payload("d2", 999, 100)), 1u);
    EXPECT_EQ(a.payload_count.count(numbered_payload("d2", 0, 100)), 0u);
}

TEST_F(dir_sink_test, Kill9WhileWritingNeverDoublesARow) {
    start_brokers();
    json cfg = dir_config({{"batch", {{"max_rows", 37}, {"max_delay_ms", 50}}}});
    auto& gw = start_gateway(cfg);
    auto& dev = connect_device();
    gw.kill9();  // the backlog builds in the local broker's session, then in the buffer
    publish_n(dev, "d3", 0, 3000);
    int kills = 0;
    for (int round = 0; round < 8; ++round) {
        start_gateway(cfg);
        // Kill it at a different point of the drain each time.
        const int64_t target = 100 + 37 * round;
        gateway_->wait_until(
            [&](const json& s) {
                const json& n = json_at(s, "sinks/archive/rows_uploaded");
                return n.is_number() && n.get<int64_t>() >= target;
            },
            10s);
        gateway_->kill9();
        ++kills;
    }
    start_gateway(cfg);
    ASSERT_TRUE(wait_drained(60s));
    EXPECT_EQ(kills, 8);
    expect_exactly_once(read_archive(archive_dir()), "d3", 3000);
}

TEST_F(dir_sink_test, AFullDiskIsAnErrorStateAndDrainsOnceThereIsRoom) {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a tiny tmpfs needs root";
    fs::create_directories(archive_dir());
    if (::mount("tmpfs", archive_dir().c_str(), "tmpfs", 0, "size=64k") != 0) {
        GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    }
    struct unmount {
        fs::path p;
        ~unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } guard{archive_dir()};
    start_brokers();
    auto& gw = start_gateway(dir_config(
        {{"compression", "none"}, {"batch", {{"max_rows", 100}, {"max_delay_ms", 100}}}}));
    auto& dev = connect_device();
    publish_n(dev, "d4", 0, 2000, 200);
    ASSERT_TRUE(wait_sink_state("error", 30s, "archive")) << gw.last_status();
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_NE(json_at(*s, "sinks/archive/last_error").get<std::string>().find("No space"),
              std::string::npos)
        << json_at(*s, "sinks/archive/last_error");
    EXPECT_TRUE(gw.running());
    // Room again: the cap is not the point here, a bigger file system is.
    ASSERT_EQ(::mount("tmpfs", archive_dir().c_str(), "tmpfs", MS_REMOUNT, "size=16m"), 0);
    ASSERT_TRUE(gw.reload());  // SIGHUP retries a sink in error at once
    ASSERT_TRUE(wait_drained(30s)) << gw.last_status();
    expect_exactly_once(read_archive(archive_dir(), false), "d4", 2000, 200);
}

// A JPEG-looking binary payload (invalid UTF-8) that carries its index.
std::string frame(size_t i, size_t size) {
    std::string p("\xFF\xD8\xFF\xE0#", 5);
    p += std::to_string(i) + "#";
    uint32_t x = static_cast<uint32_t>(i) + 7;
    while (p.size() < size) {
        x = x * 1664525u + 1013904223u;
        p += static_cast<char>(x >> 24);
    }
    return p;
}

struct object_files {
    std::map<uint64_t, std::string> objects;     // seq -> relative name
    std::map<std::string, std::string> batches;  // relative name -> text
};

object_files list_object_files(const fs::path& root) {
    object_files f;
    const std::regex object_name(R"(gw-it/objects/.+/(\d{20}))");
    for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
         ++it) {
        if (it->path().filename() == ".tmp") {
            it.disable_recursion_pending();
            continue;
        }
        if (!it->is_regular_file()) continue;
        const std::string rel = fs::relative(it->path(), root).string();
        std::smatch m;
        if (std::regex_match(rel, m, object_name)) {
            f.objects[std::stoull(m[1])] = rel;
        } else {
            f.batches[rel] = read_file(it->path());
        }
    }
    return f;
}

TEST_F(dir_sink_test, BinaryRowsBecomeFilesOfTheirOwnWrittenBeforeTheBatchFileNamingThem) {
    start_brokers();
    auto& gw = start_gateway(dir_config({{"compression", "none"},
                                         {"object_key", "{gateway_id}/objects/{topic}/{seq}"},
                                         {"batch", {{"max_rows", 20}, {"max_delay_ms", 100}}}}));
    auto& dev = connect_device();
    std::set<std::string> frames;
    for (size_t i = 0; i < 90; ++i) {
        if (i % 3 == 2) {
            dev.publish("devices/d5/telemetry/t", numbered_payload("d5", i));
        } else {
            frames.insert(frame(i, 2000 + i));
            dev.publish("devices/cam 1/telemetry/frame", frame(i, 2000 + i));
        }
    }
    dev.flush(30s);
    ASSERT_TRUE(wait_drained(30s)) << gw.last_status();
    const object_files f = list_object_files(archive_dir());
    EXPECT_TRUE(fs::is_empty(archive_dir() / ".tmp"));
    size_t pointers = 0, inline_rows = 0;
    std::set<std::string> seen;
    for (const auto& [name, text] : f.batches) {
        const auto batch_time = fs::last_write_time(archive_dir() / name);
        std::istringstream lines(text);
        for (std::string line; std::getline(lines, line);) {
            const json j = json::parse(line);
            if (j.contains("payload")) {
                ++inline_rows;
                continue;
            }
            ++pointers;
            // Named relative to path, percent-encoded like every file name.
            const std::string object = j["object"];
            const uint64_t seq = j["seq"];
            EXPECT_EQ(object, "gw-it/objects/devices/cam%201/telemetry/frame/" +
                                  std::string(20 - std::to_string(seq).size(), '0') +
                                  std::to_string(seq));
            ASSERT_TRUE(f.objects.count(seq)) << line;
            EXPECT_EQ(f.objects.at(seq), object);
            const std::string body = read_file(archive_dir() / object);
            EXPECT_EQ(frames.count(body), 1u) << object;
            seen.insert(body);
            EXPECT_EQ(j["content_type"], "image/jpeg");
            EXPECT_EQ(j["bytes"], body.size());
            EXPECT_LE(fs::last_write_time(archive_dir() / object), batch_time)
                << object << " was written after the batch file naming it";
        }
    }
    EXPECT_EQ(inline_rows, 30u);
    EXPECT_EQ(pointers, frames.size());
    EXPECT_EQ(seen.size(), frames.size());
    EXPECT_EQ(f.objects.size(), frames.size());
}

TEST_F(dir_sink_test, TheCapRemovesObjectFilesAndBatchFilesOldestFirst) {
    start_brokers();
    auto& gw = start_gateway(dir_config({{"compression", "none"},
                                         {"max_bytes", 60000},
                                         {"object_key", "{gateway_id}/objects/{topic}/{seq}"},
                                         {"batch", {{"max_rows", 10}, {"max_delay_ms", 50}}}}));
    auto& dev = connect_device();
    for (size_t i = 0; i < 200; ++i) dev.publish("devices/cam2/telemetry/frame", frame(i, 3000));
    dev.flush(30s);
    ASSERT_TRUE(wait_drained(30s)) << gw.last_status();
    const object_files f = list_object_files(archive_dir());
    uint64_t bytes = 0;
    for (const auto& [seq, name] : f.objects) bytes += fs::file_size(archive_dir() / name);
    for (const auto& [name, text] : f.batches) bytes += text.size();
    EXPECT_LE(bytes, 60000u + 10 * 3200) << "the newest batch and its objects always stay";
    ASSERT_FALSE(f.objects.empty());
    ASSERT_FALSE(f.batches.empty());
    // What is left is the newest: the object files form a run up to the last row, and every
    // remaining batch file but possibly the oldest still has all its objects.
    const uint64_t last = f.objects.rbegin()->first;
    EXPECT_EQ(f.objects.size(), last - f.objects.begin()->first + 1);
    size_t incomplete = 0;
    for (const auto& [name, text] : f.batches) {
        std::istringstream lines(text);
        bool complete = true;
        for (std::string line; std::getline(lines, line);) {
            if (!f.objects.count(json::parse(line)["seq"].get<uint64_t>())) complete = false;
        }
        if (!complete) ++incomplete;
    }
    EXPECT_LE(incomplete, 1u);
    auto s = gw.status_json();
    ASSERT_TRUE(s);
    EXPECT_GT(json_at(*s, "sinks/archive/files_removed").get<int64_t>(), 0);
}

TEST_F(dir_sink_test, MaxBytesPerSecondKeepsTheWriteRateJustUnderTheLimit) {
    start_brokers();
    constexpr double rate = 200000;
    auto& gw = start_gateway(dir_config({{"compression", "none"},
                                         {"max_bytes_per_s", static_cast<int64_t>(rate)},
                                         {"batch", {{"max_rows", 400}, {"max_delay_ms", 100}}}}));
    auto& dev = connect_device();
    const auto started = std::chrono::steady_clock::now();
    publish_n(dev, "d6", 0, 4000, 200);  // about 1.2 MB of NDJSON: 6 s at the limit
    ASSERT_TRUE(wait_drained(60s)) << gw.last_status();
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const archive a = read_archive(archive_dir(), false);
    expect_exactly_once(a, "d6", 4000, 200);
    std::vector<std::string> files = a.files;
    std::sort(files.begin(), files.end());  // by first_seq: the order they were written
    ASSERT_GE(files.size(), 8u);
    // Upload k+1 starts bytes(k) / rate after upload k started, so the files' completion times
    // are spaced by the previous file's size: measure over files 2..n, whatever the size of the
    // first (cut by max_delay_ms while the backlog built) and of the last.
    uint64_t bytes = 0;
    for (size_t k = 1; k + 1 < files.size(); ++k) bytes += fs::file_size(archive_dir() / files[k]);
    const double secs =
        std::chrono::duration<double>(fs::last_write_time(archive_dir() / files.back()) -
                                      fs::last_write_time(archive_dir() / files[1]))
            .count();
    ASSERT_GT(secs, 0);
    const double measured = static_cast<double>(bytes) / secs;
    std::cout << "max_bytes_per_s " << rate << ": measured " << measured << " B/s over " << secs
              << " s (" << files.size() << " files, drain " << elapsed << " s)\n";
    // Never above; below by at most the 50 ms tick that starts the next upload, per batch.
    EXPECT_GT(measured, 0.85 * rate);
    EXPECT_LT(measured, 1.03 * rate);
}

}  // namespace
}  // namespace egw::test
