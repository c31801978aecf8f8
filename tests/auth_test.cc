#include "server/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

namespace calib {
namespace {

using ::testing::HasSubstr;

// A temporary file holding `text`, removed with the object.
class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    char path[] = "/tmp/calib_token_XXXXXX";
    const int fd = mkstemp(path);
    close(fd);
    path_ = path;
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(BearerTokenTest, MatchesOnlyTheTokenAfterTheScheme) {
  TempFile file("s3cr3t-T0ken_/+=\r\n \n");
  auto token = BearerToken::FromFile(file.path());
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_TRUE(token->Matches("Bearer s3cr3t-T0ken_/+="));
  EXPECT_TRUE(token->Matches("bearer s3cr3t-T0ken_/+="));
  EXPECT_TRUE(token->Matches("BEARER s3cr3t-T0ken_/+="));
  for (const char* wrong :
       {"", "Bearer", "Bearer ", "s3cr3t-T0ken_/+=", "Bearer s3cr3t-T0ken_/+",
        "Bearer s3cr3t-T0ken_/+==", "Bearer s3cr3t-T0ken_/+= ",
        "Bearer  s3cr3t-T0ken_/+=", "Bearer s3cr3t-T0ken_/+=\r\n",
        "Basic s3cr3t-T0ken_/+=", "Bearer S3CR3T-T0KEN_/+=", "Bearers3cr3t-T0ken_/+="}) {
    EXPECT_FALSE(token->Matches(wrong)) << wrong;
  }
}

TEST(BearerTokenTest, FilesThatHoldNoUsableTokenNameTheFlagAndPath) {
  for (const char* text :
       {"", "\n", "  \t\n", " leading-space", "two words", "tab\there", "caf\xc3\xa9"}) {
    TempFile file(text);
    auto token = BearerToken::FromFile(file.path());
    ASSERT_FALSE(token.ok()) << text;
    EXPECT_EQ(token.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(token.status().message()),
                HasSubstr("flag --auth-token-file: "));
    EXPECT_THAT(std::string(token.status().message()), HasSubstr(file.path()));
  }
  auto missing = BearerToken::FromFile("/nonexistent/calib/token");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("cannot read /nonexistent/calib/token"));
}

TEST(BearerTokenTest, ErrorsNeverQuoteTheFile) {
  TempFile file("two secret-words\n");
  auto token = BearerToken::FromFile(file.path());
  ASSERT_FALSE(token.ok());
  EXPECT_THAT(std::string(token.status().message()),
              ::testing::Not(HasSubstr("secret-words")));
}

}  // namespace
}  // namespace calib
