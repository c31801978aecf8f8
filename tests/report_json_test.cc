#include "client/report_json.h"

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <string>

namespace calib {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ReportJsonTest, UsesProtoNamesAndPrintsZeros) {
  v1::Report report;
  report.mutable_metrics()->set_num_samples(10);
  report.mutable_metrics()->set_ece(0.125);
  report.mutable_metrics()->add_reliability_bins()->set_count(10);
  auto json = ReportToJson(report);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"num_samples\": \"10\""));  // uint64 as a string
  EXPECT_THAT(*json, HasSubstr("\"ece\": 0.125"));
  EXPECT_THAT(*json, HasSubstr("\"ece_equal_mass\": 0"));
  EXPECT_THAT(*json, HasSubstr("\"debiased_rms_ce\": 0"));
  EXPECT_THAT(*json, HasSubstr("\"mean_confidence\": 0"));
  EXPECT_THAT(*json, HasSubstr("\"accuracy_lower\": 0"));
  EXPECT_THAT(*json, HasSubstr("\"num_ignored\": \"0\""));
  EXPECT_THAT(*json, HasSubstr("\"warnings\": []"));
  EXPECT_THAT(*json, Not(HasSubstr("numSamples")));
}

TEST(ReportJsonTest, UnsetOptionalsAndMessagesStayAbsent) {
  v1::Report report;
  report.mutable_metrics()->set_ece(0.5);
  auto json = ReportToJson(report);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, Not(HasSubstr("classwise_ece")));
  EXPECT_THAT(*json, Not(HasSubstr("smooth_ece")));
  EXPECT_THAT(*json, Not(HasSubstr("temperature_scaling")));
  EXPECT_THAT(*json, Not(HasSubstr("platt_scaling")));
  EXPECT_THAT(*json, Not(HasSubstr("intervals")));

  report.mutable_metrics()->set_classwise_ece(0);
  report.mutable_temperature_scaling()->set_temperature(2);
  json = ReportToJson(report);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"classwise_ece\": 0"));
  EXPECT_THAT(*json, HasSubstr("\"temperature\": 2"));
  EXPECT_THAT(*json, Not(HasSubstr("smooth_ece")));
}

TEST(ReportJsonTest, IsIndentedAndEndsWithOneNewline) {
  v1::Report report;
  report.add_warnings("w");
  auto json = ReportToJson(report);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json,
              HasSubstr("{\n \"num_ignored\": \"0\",\n \"warnings\": [\n  \"w\"\n ]"));
  EXPECT_THAT(*json, EndsWith("}\n"));
  EXPECT_THAT(*json, Not(EndsWith("\n\n")));
}

TEST(ReportJsonTest, ParsesBackToTheSameReport) {
  v1::Report report;
  report.mutable_metrics()->set_num_samples(3);
  report.mutable_metrics()->set_nll(0.1 + 0.2);  // not a short decimal
  report.mutable_metrics()->set_smooth_ece(0.01);
  report.mutable_platt_scaling()->set_slope(-1.5);
  report.add_warnings("careful");
  auto json = ReportToJson(report);
  ASSERT_TRUE(json.ok()) << json.status();
  v1::Report parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*json, &parsed).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(report, parsed));
}

}  // namespace
}  // namespace calib
