// SPDX-License-Identifier: Apache-2.0
//
// TLS to the cloud: mutual TLS works; a wrong CA or a missing client certificate is reported
// clearly (log, status last_error), does not crash the gateway, and loses nothing: once the
// config is fixed (SIGHUP reload or restart) everything buffered arrives.

#include <gtest/gtest.h>

#include <set>

#include "integration/gateway_test_fixture.h"
#include "support/tls_material.h"

namespace egw::test {
namespace {

class tls_test : public gateway_test {
protected:
    void SetUp() override {
        tls_ = make_tls_material(tmp_.path());
        mosquitto_options cloud_opts;
        cloud_opts.tls = mosquitto_tls_options{tls_.ca_cert, tls_.server_cert, tls_.server_key,
                                               /*require_certificate=*/true};
        make_brokers({}, cloud_opts);
        start_brokers();
    }

    json tls_config(const std::filesystem::path& ca_file, bool with_client_cert = true) const {
        json cfg = base_config();
        cfg["sinks"]["cloud"]["uri"] = cloud_->tls_uri();
        json tls = {{"ca_file", ca_file.string()}, {"verify", true}};
        if (with_client_cert) {
            tls["cert_file"] = tls_.client_cert.string();
            tls["key_file"] = tls_.client_key.string();
        }
        cfg["sinks"]["cloud"]["tls"] = tls;
        return cfg;
    }

    std::set<std::string> publish_batch(const std::string& device, int n) {
        std::set<std::string> ids;
        for (int i = 0; i < n; ++i) {
            device_->publish("devices/" + device + "/telemetry/x", numbered_payload(device, i));
            ids.insert(device + ":" + std::to_string(i));
        }
        device_->flush();
        return ids;
    }

    // Waits until the sink reports an error while staying offline; returns last_error.
    std::string wait_for_tls_failure() {
        const auto st = gateway_->wait_until(
            [](const json& s) {
                const auto e = json_at(s, "sinks/cloud/last_error");
                return json_at(s, "sinks/cloud/state") == "offline" && e.is_string() &&
                       !e.get<std::string>().empty();
            },
            15s);
        EXPECT_TRUE(st) << "no last_error while the TLS handshake fails; "
                        << gateway_->last_status();
        return st ? json_at(*st, "sinks/cloud/last_error").get<std::string>() : std::string{};
    }

    tls_material tls_;
};

TEST_F(tls_test, MutualTlsCloudSinkDelivers) {
    start_gateway(tls_config(tls_.ca_cert));
    connect_cloud_subscriber();
    connect_device();
    ASSERT_TRUE(wait_sink_state("online", 15s)) << gateway_->last_status();
    const auto expected = publish_batch("t1", 20);
    EXPECT_TRUE(wait_for_unique(expected, 15s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
}

TEST_F(tls_test, WrongCaIsReportedAndReloadWithRightCaDeliversEverything) {
    connect_cloud_subscriber();
    start_gateway(tls_config(tls_.other_ca_cert));
    connect_device();

    const auto error = wait_for_tls_failure();
    std::cout << "[ info ] last_error with wrong CA: " << error << "\n";
    // OpenSSL's reason, not just "connection failed": the operator sees what to fix.
    EXPECT_NE(error.find("certificate verify failed"), std::string::npos) << error;
    const auto expected = publish_batch("t2", 50);
    ASSERT_TRUE(
        gateway_->wait_until([](const json& s) { return json_int(s, "buffer/rows") == 50; }, 10s))
        << gateway_->last_status();
    ASSERT_TRUE(gateway_->running()) << "gateway died on a TLS error";
    EXPECT_TRUE(data_messages().empty()) << "nothing can pass an unverified server";

    gateway_->set_config(tls_config(tls_.ca_cert));
    ASSERT_TRUE(gateway_->reload());
    EXPECT_TRUE(wait_for_unique(expected, 20s))
        << "after SIGHUP with the right CA, missing "
        << check_delivery(data_messages(), expected).missing.size();
    EXPECT_TRUE(wait_sink_state("online", 10s)) << gateway_->last_status();
}

TEST_F(tls_test, WrongCaFixedByRestartDeliversEverything) {
    connect_cloud_subscriber();
    start_gateway(tls_config(tls_.other_ca_cert));
    connect_device();

    wait_for_tls_failure();
    const auto log = gateway_->log_since_start();
    const bool mentions_tls =
        log.find("TLS") != std::string::npos || log.find("SSL") != std::string::npos ||
        log.find("ssl") != std::string::npos || log.find("tls") != std::string::npos ||
        log.find("certificate") != std::string::npos;
    EXPECT_TRUE(mentions_tls) << "the log should say the failure is about TLS/certificates:\n"
                              << tail_file(gateway_->log_file(), 20);

    const auto expected = publish_batch("t3", 30);
    ASSERT_TRUE(
        gateway_->wait_until([](const json& s) { return json_int(s, "buffer/rows") == 30; }, 10s))
        << gateway_->last_status();
    ASSERT_EQ(gateway_->terminate().exit_code, 0);

    gateway_->set_config(tls_config(tls_.ca_cert));
    ASSERT_TRUE(gateway_->start_and_wait_ready());
    EXPECT_TRUE(wait_for_unique(expected, 20s))
        << "missing " << check_delivery(data_messages(), expected).missing.size();
}

TEST_F(tls_test, MissingClientCertificateIsReportedNotFatal) {
    start_gateway(tls_config(tls_.ca_cert, /*with_client_cert=*/false));
    const auto error = wait_for_tls_failure();
    std::cout << "[ info ] last_error without client certificate: " << error << "\n";
    EXPECT_TRUE(gateway_->running());
}

}  // namespace
}  // namespace egw::test
