// SPDX-License-Identifier: Apache-2.0
#include "plugins/host/isolation_protocol.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>

namespace egw::plugins::isolation {

region::~region() {
    if (data_ != nullptr) munmap(data_, size_);
    if (fd_ >= 0) close(fd_);
}

bool region::attach(int fd, size_t size) {
    fd_ = fd;
    return remap(size);
}

bool region::create(size_t size) {
    fd_ = memfd_create("egw-plugin-io", MFD_CLOEXEC);
    if (fd_ < 0) return false;
    if (ftruncate(fd_, off_t(size)) != 0) return false;
    return remap(size);
}

bool region::remap(size_t size) {
    if (size == size_ && data_ != nullptr) return true;
    if (size == 0 || size > kMaxRegionBytes) return false;
    void* p = data_ == nullptr ? mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0)
                               : mremap(data_, size_, size, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) return false;
    data_ = static_cast<uint8_t*>(p);
    size_ = size;
    return true;
}

bool region::reserve(size_t need) {
    if (need <= size_) return true;
    if (need > kMaxRegionBytes) return false;
    size_t size = std::bit_ceil(std::max(need, kMinRegionBytes));
    if (ftruncate(fd_, off_t(size)) != 0) return false;
    return remap(size);
}

size_t encoded_size(const std::vector<output>& outs) {
    size_t n = 0;
    for (const auto& o : outs) {
        n += sizeof(output_header) + o.topic.size() + o.content_type.size() + o.payload.size();
        for (const auto& [k, v] : o.properties) n += 8 + k.size() + v.size();
    }
    return n;
}

void encode(writer& w, const std::vector<output>& outs) {
    for (const auto& o : outs) {
        output_header h{};
        h.topic_len = uint32_t(o.topic.size());
        h.content_type_len = uint32_t(o.content_type.size());
        h.payload_len = o.payload.size();
        h.priority = o.priority;
        h.property_count = uint32_t(o.properties.size());
        w.pod(h);
        w.str(o.topic);
        w.str(o.content_type);
        w.str(o.payload);
        for (const auto& [k, v] : o.properties) {
            w.pod(uint32_t(k.size()));
            w.pod(uint32_t(v.size()));
            w.str(k);
            w.str(v);
        }
    }
}

bool decode(reader& r, uint32_t count, std::vector<output>& outs) {
    outs.reserve(count);
    for (uint32_t i = 0; i < count && r.ok; ++i) {
        auto h = r.pod<output_header>();
        output o;
        o.topic = r.str(h.topic_len);
        o.content_type = r.str(h.content_type_len);
        o.payload = r.str(h.payload_len);
        o.priority = h.priority;
        for (uint32_t j = 0; j < h.property_count && r.ok; ++j) {
            auto kl = r.pod<uint32_t>();
            auto vl = r.pod<uint32_t>();
            std::string k(r.str(kl));
            o.properties.emplace_back(std::move(k), std::string(r.str(vl)));
        }
        if (r.ok) outs.push_back(std::move(o));
    }
    return r.ok;
}

bool send_packet(int fd, const void* data, size_t len) {
    for (;;) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n == ssize_t(len)) return true;
        if (n < 0 && errno == EINTR) continue;
        return false;
    }
}

}  // namespace egw::plugins::isolation
