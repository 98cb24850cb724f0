// SPDX-License-Identifier: Apache-2.0
//
// TLS material made fresh by each test with the openssl CLI (nothing checked in, nothing that
// expires between runs).

#pragma once

#include <filesystem>

namespace egw::test {

struct tls_material {
    std::filesystem::path ca_cert;
    std::filesystem::path ca_key;
    std::filesystem::path server_cert;  // CN 127.0.0.1, SAN IP:127.0.0.1 DNS:localhost
    std::filesystem::path server_key;
    std::filesystem::path client_cert;  // signed by ca_cert, for mutual TLS
    std::filesystem::path client_key;
    std::filesystem::path other_ca_cert;  // an unrelated CA: verifying the server with it fails
    std::filesystem::path other_ca_key;
};

// Creates a CA, a server and a client certificate signed by it, and a second unrelated CA, all
// in `dir` (EC P-256 keys: fast to generate). Throws std::runtime_error with openssl's output if
// a step fails.
tls_material make_tls_material(const std::filesystem::path& dir);

}  // namespace egw::test
