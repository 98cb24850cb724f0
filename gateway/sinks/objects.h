// SPDX-License-Identifier: Apache-2.0
// Binary payloads as objects of their own (the `object_key` option of the s3 and dir sinks):
// which rows become objects, their content type, and the NDJSON line that points to one in the
// batch. Pure functions, any thread; the batch sinks call them on the worker pool.
//
// A row becomes an object when its payload is binary, i.e. not UTF-8 text (JSON and text stay
// inline in the batch, see ndjson.h). Its batch then carries, instead of "payload_b64":
//   {"gateway":ID,"seq":N,"ts_ms":N,"topic":T,"object":KEY,"content_type":CT,"bytes":N}
// The object is stored before the batch that points to it, under a key that depends on the row
// alone (never on the batch's range, which a split changes), so a retry rewrites the same keys.
#pragma once

#include <string>
#include <string_view>

#include "storage/buffer.h"

namespace egw::objects {

// True when the row's payload goes into an object of its own (given an object_key).
bool is_object_row(const storage::stored_row& row);

// The Content-Type an object is stored with. The one place that chooses it: a sniff of the
// payload (JPEG, PNG, JSON), else application/octet-stream.
std::string content_type_of(const storage::stored_row& row);

// Appends the pointer line for `row`, stored as `object` (newline included).
void append_pointer_line(std::string& out, std::string_view gateway_id,
                         const storage::stored_row& row, std::string_view object,
                         std::string_view content_type);

// Undoes ndjson::encode_key: the key an S3 service stores for an encoded request path.
std::string decode_key(std::string_view encoded);

}  // namespace egw::objects
