// SPDX-License-Identifier: Apache-2.0
// The wire between isolated_instance (the gateway) and edge-gateway-plugin-host (the child).
// Internal: both sides are built from the same tree, so there is no versioning.
//
// Transport. A SOCK_SEQPACKET socketpair carries small fixed headers, one per packet, so a
// read is a whole message or EOF (the child died). Bulk bytes (topics, payloads, outputs, state
// snapshots, the config) go through one shared memory region, a memfd both sides map: the
// gateway writes a request's bytes at offset 0 and sends a `request`; the child answers with
// zero or more `log` packets and one `reply`, whose bytes it wrote at offset 0 in turn. Only one
// side touches the region at a time (strict request/reply), so it needs no locks.
//
// Growth. Whoever needs more room ftruncate()s the memfd to a larger power of two and remaps;
// every packet carries the writer's region size, and the reader remaps when it differs. A
// camera frame thus crosses once (the gateway's copy into the region), not through the socket.
//
// The child gets the socket as fd 3 and the memfd as fd 4.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/host/instance.h"

namespace egw::plugins::isolation {

constexpr int kChildSocketFd = 3;
constexpr int kChildShmFd = 4;
// The region never grows past this: a request or reply this large is refused, not mapped.
constexpr size_t kMaxRegionBytes = size_t(1) << 30;
constexpr size_t kMinRegionBytes = size_t(1) << 16;

enum class op : uint32_t { create = 1, message = 2, timer = 3, snapshot = 4, restore = 5 };
enum class packet : uint32_t { reply = 1, log = 2 };

struct request {
    op code;
    uint32_t topic_len;    // message: bytes at 0
    uint64_t region_size;  // the gateway's mapping size
    uint64_t data_len;     // total bytes the request placed at offset 0
    uint64_t payload_len;  // message: after topic, device id, content type
    uint32_t device_len;
    uint32_t content_type_len;
    int64_t ts_ms;  // message: ingest time; timer: now_ms
    uint64_t seq;
    int32_t qos;
    uint32_t name_len;  // create: instance name, then path, then config JSON
    uint32_t path_len;
    uint32_t time_budget_ms;
    uint64_t max_output_bytes;
    uint64_t memory_cap_bytes;
};

struct reply {
    packet kind;           // packet::reply
    int32_t failure;       // failure_kind
    uint64_t region_size;  // the child's mapping size
    uint64_t data_len;     // reason, then state (snapshot) or outputs
    int64_t timer_ms;
    uint32_t reason_len;
    uint32_t output_count;
    uint32_t stateful;  // create: the instance keeps state
    uint32_t reserved;
};

// A log line: this header and the text in the same packet.
struct log_packet {
    packet kind;  // packet::log
    int32_t level;
};
constexpr size_t kMaxLogText = 4096;

// An output in the region: this header, then topic, content type, payload, then for each
// property a uint32 key length, a uint32 value length, key, value.
struct output_header {
    uint32_t topic_len;
    uint32_t content_type_len;
    uint64_t payload_len;
    int32_t priority;
    uint32_t property_count;
};

// A mapping of the shared memfd. Not thread-safe; one owner per process.
class region {
public:
    region() = default;
    ~region();
    region(const region&) = delete;
    region& operator=(const region&) = delete;

    // Adopts `fd` (a memfd of at least `size` bytes) and maps it. Returns false on failure.
    bool attach(int fd, size_t size);
    // Creates a memfd of `size` bytes and maps it.
    bool create(size_t size);
    // Makes the mapping at least `need` bytes, growing the file (powers of two). False when
    // `need` exceeds kMaxRegionBytes or the system refuses.
    bool reserve(size_t need);
    // Maps exactly `size` bytes of the file (after the other side grew it).
    bool remap(size_t size);

    int fd() const { return fd_; }
    uint8_t* data() const { return data_; }
    size_t size() const { return size_; }

private:
    int fd_ = -1;
    uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

// Sequential writes into / reads from the region (the caller reserved the room).
struct writer {
    uint8_t* p;
    void bytes(const void* src, size_t n) {
        if (n != 0) std::memcpy(p, src, n);
        p += n;
    }
    void str(std::string_view s) { bytes(s.data(), s.size()); }
    template <class T>
    void pod(const T& v) {
        bytes(&v, sizeof v);
    }
};

struct reader {
    const uint8_t* p;
    const uint8_t* end;
    bool ok = true;
    std::string_view str(size_t n) {
        if (size_t(end - p) < n) {
            ok = false;
            return {};
        }
        std::string_view s(reinterpret_cast<const char*>(p), n);
        p += n;
        return s;
    }
    template <class T>
    T pod() {
        T v{};
        if (size_t(end - p) < sizeof v) {
            ok = false;
            return v;
        }
        std::memcpy(&v, p, sizeof v);
        p += sizeof v;
        return v;
    }
};

// Outputs in the region (see output_header).
size_t encoded_size(const std::vector<output>& outs);
void encode(writer& w, const std::vector<output>& outs);
// False when the bytes are truncated or malformed.
bool decode(reader& r, uint32_t count, std::vector<output>& outs);

// send() of one packet, retried on EINTR. False on any error.
bool send_packet(int fd, const void* data, size_t len);

}  // namespace egw::plugins::isolation
