// SPDX-License-Identifier: Apache-2.0
// What the local (ingest) and cloud (sink) connections share about Paho: TLS options, how a
// failure is told, how often it is logged, how long a connect may take.
#pragma once

#include <mqtt/async_client.h>

#include <chrono>
#include <string>

#include "gateway/config.h"

namespace egw {

// How long Paho may take to establish a connection (TCP, TLS, CONNACK).
inline constexpr std::chrono::seconds connect_timeout{10};

// TLS options from the config: CA, client certificate and key (mutual TLS), verification.
// No ssl error handler: Paho C++ 1.2 hands Paho C a pointer to the ssl_options it was set on,
// which copying the connect options leaves dangling (it crashed on a failed handshake).
mqtt::ssl_options ssl_options_for(const tls_config& tls);

// How a failed Paho operation is told to the operator.
std::string describe(const mqtt::token& tok);

// Whether the n-th consecutive connect failure is worth a log line: the first few, then
// every 10th, so that a week offline does not fill the journal.
bool log_failure(int failures);

}  // namespace egw
