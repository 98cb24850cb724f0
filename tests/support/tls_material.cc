// SPDX-License-Identifier: Apache-2.0

#include "support/tls_material.h"

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/child_process.h"
#include "support/temp_dir.h"

namespace egw::test {

namespace {

constexpr const char* k_openssl = "/usr/bin/openssl";

void openssl(const std::filesystem::path& dir, std::vector<std::string> args) {
    args.insert(args.begin(), k_openssl);
    const auto r = run_command(args, dir, "openssl", std::chrono::seconds(30));
    if (r.exit_code != 0) {
        std::string cmd;
        for (const auto& a : args) {
            cmd += a + " ";
        }
        throw std::runtime_error("openssl failed (" + std::to_string(r.exit_code) + "): " + cmd +
                                 "\n" + r.err);
    }
}

void make_ca(const std::filesystem::path& dir, const std::string& name,
             const std::filesystem::path& cert, const std::filesystem::path& key) {
    openssl(dir, {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", key.string(), "-out", cert.string(), "-days", "2", "-subj",
                  "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                  "keyUsage=critical,keyCertSign,cRLSign"});
}

void make_leaf(const std::filesystem::path& dir, const std::string& cn, const std::string& ext,
               const tls_material& ca, const std::filesystem::path& cert,
               const std::filesystem::path& key) {
    const auto csr = dir / (cn + ".csr");
    const auto ext_file = dir / (cn + ".ext");
    write_file(ext_file, ext);
    openssl(dir, {"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                  "-nodes", "-keyout", key.string(), "-out", csr.string(), "-subj", "/CN=" + cn});
    openssl(dir, {"x509", "-req", "-in", csr.string(), "-CA", ca.ca_cert.string(), "-CAkey",
                  ca.ca_key.string(), "-CAcreateserial", "-out", cert.string(), "-days", "2",
                  "-extfile", ext_file.string()});
}

}  // namespace

tls_material make_tls_material(const std::filesystem::path& dir) {
    tls_material m;
    m.ca_cert = dir / "ca.crt";
    m.ca_key = dir / "ca.key";
    m.server_cert = dir / "server.crt";
    m.server_key = dir / "server.key";
    m.client_cert = dir / "client.crt";
    m.client_key = dir / "client.key";
    m.other_ca_cert = dir / "other-ca.crt";
    m.other_ca_key = dir / "other-ca.key";

    make_ca(dir, "egw-test-ca", m.ca_cert, m.ca_key);
    make_ca(dir, "egw-unrelated-ca", m.other_ca_cert, m.other_ca_key);
    make_leaf(dir, "127.0.0.1",
              "basicConstraints=CA:FALSE\n"
              "keyUsage=critical,digitalSignature,keyEncipherment\n"
              "extendedKeyUsage=serverAuth\n"
              "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
              m, m.server_cert, m.server_key);
    make_leaf(dir, "egw-test-client",
              "basicConstraints=CA:FALSE\n"
              "keyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=clientAuth\n",
              m, m.client_cert, m.client_key);
    return m;
}

}  // namespace egw::test
