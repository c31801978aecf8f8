#include "server/server_options.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace calib {
namespace {

using ::testing::HasSubstr;

TEST(ServerOptionsTest, SecurityAndConnectionDefaults) {
  auto options = ParseServerOptions({});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->tls_cert, "");
  EXPECT_EQ(options->auth_token_file, "");
  EXPECT_TRUE(options->reflection);
  EXPECT_EQ(options->keepalive_seconds, 30u);
  EXPECT_EQ(options->keepalive_timeout_seconds, 10u);
  EXPECT_EQ(options->max_connection_age_seconds, 300u);
  EXPECT_EQ(options->max_connection_age_grace_seconds, 0u);
}

TEST(ServerOptionsTest, EverySecurityAndConnectionFlagIsKept) {
  auto options = ParseServerOptions(
      {"--tls-cert", "c.pem", "--tls-key=k.pem", "--tls-client-ca", "ca.pem",
       "--auth-token-file", "token", "--keepalive-seconds", "45",
       "--keepalive-timeout-seconds", "5", "--max-connection-age-seconds", "0",
       "--max-connection-age-grace-seconds", "60"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->tls_cert, "c.pem");
  EXPECT_EQ(options->tls_key, "k.pem");
  EXPECT_EQ(options->tls_client_ca, "ca.pem");
  EXPECT_EQ(options->auth_token_file, "token");
  EXPECT_EQ(options->keepalive_seconds, 45u);
  EXPECT_EQ(options->keepalive_timeout_seconds, 5u);
  EXPECT_EQ(options->max_connection_age_seconds, 0u);
  EXPECT_EQ(options->max_connection_age_grace_seconds, 60u);
}

TEST(ServerOptionsTest, ReflectionIsOffWithATokenUnlessAskedFor) {
  auto options = ParseServerOptions({"--auth-token-file", "token"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_FALSE(options->reflection);
  options = ParseServerOptions({"--auth-token-file", "token", "--reflection"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->reflection);
}

TEST(ServerOptionsTest, SecurityFlagsThatCannotWork) {
  for (const auto& [args, why] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
           {{"--tls-key", "k.pem"}, "--tls-cert and --tls-key go together"},
           {{"--tls-client-ca", "ca.pem"}, "--tls-client-ca needs --tls-cert"},
           {{"--auth-token-file="}, "flag --auth-token-file needs a path"},
           {{"--keepalive-seconds", "0"}, "flag --keepalive-seconds: 0 is not between 1"},
           {{"--keepalive-timeout-seconds", "0"}, "flag --keepalive-timeout-seconds: 0"},
           {{"--max-connection-age-seconds", "3000000"},
            "flag --max-connection-age-seconds: 3000000 is not between 0 and 2147483"}}) {
    auto options = ParseServerOptions(args);
    ASSERT_FALSE(options.ok()) << why;
    EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(options.status().message()), HasSubstr(why));
  }
}

}  // namespace
}  // namespace calib
