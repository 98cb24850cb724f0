// SPDX-License-Identifier: Apache-2.0
#include "gateway/paho.h"

namespace egw {

mqtt::ssl_options ssl_options_for(const tls_config& tls) {
    mqtt::ssl_options ssl;
    if (!tls.ca_file.empty()) ssl.set_trust_store(tls.ca_file);
    if (!tls.cert_file.empty()) ssl.set_key_store(tls.cert_file);
    if (!tls.key_file.empty()) ssl.set_private_key(tls.key_file);
    ssl.set_enable_server_cert_auth(tls.verify);
    ssl.set_verify(tls.verify);
    return ssl;
}

std::string describe(const mqtt::token& tok) {
    // Paho C++ does not pass on Paho C's failure text; -1 is its catch-all for the transport.
    if (tok.get_return_code() == MQTTASYNC_FAILURE && tok.get_reason_code() < 0x80) {
        return "connection failed (broker unreachable, refused, or TLS handshake failed)";
    }
    return mqtt::exception::printable_error(tok.get_return_code(), tok.get_reason_code());
}

bool log_failure(int failures) { return failures <= 3 || failures % 10 == 0; }

}  // namespace egw
