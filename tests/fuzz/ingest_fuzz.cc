// SPDX-License-Identifier: Apache-2.0
//
// Fuzzes the ingest path after the broker: a topic and a payload (any bytes) go through the
// route table built from valid filters (one of them fuzzed) into a real SQLite buffer in a temp
// dir, as ingest does on Paho's thread; then the row is read back as a sink would. Properties:
//   - the append never throws and reports a status;
//   - a stored row reads back with the same topic and payload bytes and only routed sinks;
//   - the buffer stays within max_bytes plus one message (drop-oldest evicts).
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gateway/router.h"
#include "gateway/topic.h"
#include "storage/buffer.h"

namespace {

constexpr uint64_t max_bytes = 256 * 1024;

struct state {
    std::filesystem::path dir;
    std::unique_ptr<egw::storage::buffer> buf;
    int bits[3] = {};
    uint64_t acked_through[3] = {};

    state() {
        char tmpl[] = "/tmp/egw-fuzz-ingest-XXXXXX";
        dir = ::mkdtemp(tmpl);
        egw::storage::buffer_options o;
        o.path = (dir / "buffer.db").string();
        o.max_bytes = max_bytes;
        buf = std::make_unique<egw::storage::buffer>(o);
        bits[0] = buf->sink_bit("cloud");
        bits[1] = buf->sink_bit("archive");
        bits[2] = buf->sink_bit("alerts");
    }
    ~state() {
        buf.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

state& st() {
    static state s;
    return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    state& s = st();
    const std::string extra_filter = in.ConsumeRandomLengthString(64);
    const std::string topic = in.ConsumeRandomLengthString(512);
    const std::string payload = in.ConsumeRemainingBytesAsString();

    egw::route_table table;
    table.add("devices/+/telemetry/#", uint64_t{1} << s.bits[0]);
    table.add("devices/+/camera/#", (uint64_t{1} << s.bits[0]) | (uint64_t{1} << s.bits[1]));
    if (egw::filter_problem(extra_filter).empty())
        table.add(extra_filter, uint64_t{1} << s.bits[2]);
    const uint64_t sinks = table.match(topic);
    if (sinks == 0) return 0;  // ingest counts dropped.no_route and stores nothing

    const auto r = s.buf->append(topic, payload, sinks, 1'700'000'000'000, {});
    if (r.status == egw::storage::append_status::stored) {
        std::vector<egw::storage::stored_row> rows;
        int bit = 0;
        while (!(sinks & (uint64_t{1} << s.bits[bit]))) ++bit;
        s.buf->read(s.bits[bit], r.seq - 1, 1, 1 << 20, rows);
        if (rows.size() != 1 || rows[0].seq != r.seq || rows[0].topic != topic ||
            rows[0].payload != payload || (rows[0].sinks & ~sinks) != 0)
            __builtin_trap();
    }
    if (s.buf->total().bytes.load() >
        static_cast<int64_t>(max_bytes + topic.size() + payload.size() + 4096))
        __builtin_trap();
    // Now and then a sink acknowledges everything, as the loop does after PUBACKs.
    if ((r.seq & 63) == 0 && r.seq > 0) {
        for (int i = 0; i < 3; ++i) {
            s.buf->ack(s.bits[i], s.acked_through[i], r.seq);
            s.acked_through[i] = r.seq;
        }
    }
    return 0;
}
