#include "server/server_metrics.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "src/huge_pages.h"

namespace calib {
namespace {

prometheus::MetricFamily Gauge(std::string name, std::string help, double value) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  family.metric.emplace_back();
  family.metric.back().gauge.value = value;
  return family;
}

// 1 ms to about 30 minutes, by factors of 2.5: from one small batch to a long stream.
prometheus::Histogram::BucketBoundaries SecondsBuckets() {
  prometheus::Histogram::BucketBoundaries bounds;
  for (double b = 0.001; b < 2000; b *= 2.5) bounds.push_back(b);
  return bounds;
}

}  // namespace

ServerMetrics::ServerMetrics(const Admission* admission, const MemoryBudget* budget)
    : admission_(admission),
      budget_(budget),
      registry_(std::make_shared<prometheus::Registry>()),
      calls_(prometheus::BuildCounter()
                 .Name("calib_calls_total")
                 .Help("Calls ended, by method and gRPC status code")
                 .Register(*registry_)),
      bytes_(prometheus::BuildCounter()
                 .Name("calib_received_bytes_total")
                 .Help("Bytes of the messages received (serialized), by method")
                 .Register(*registry_)),
      samples_(prometheus::BuildCounter()
                   .Name("calib_received_samples_total")
                   .Help("Samples received and accepted by the engine (ignored "
                         "labels not counted), by method")
                   .Register(*registry_)),
      seconds_(prometheus::BuildHistogram()
                   .Name("calib_evaluation_seconds")
                   .Help("Duration of Evaluate and EvaluateStream calls, from the "
                         "call's start to its end")
                   .Register(*registry_)) {}

void ServerMetrics::CallEnded(const std::string& method, grpc::StatusCode code) {
  // absl names the codes as gRPC does ("RESOURCE_EXHAUSTED"), and their numbers match.
  calls_
      .Add({{"method", method},
            {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}})
      .Increment();
}

void ServerMetrics::Received(const std::string& method, uint64_t bytes) {
  bytes_.Add({{"method", method}}).Increment(static_cast<double>(bytes));
}

void ServerMetrics::Samples(const std::string& method, uint64_t samples) {
  samples_.Add({{"method", method}}).Increment(static_cast<double>(samples));
}

void ServerMetrics::EvaluationEnded(const std::string& method, double seconds) {
  seconds_.Add({{"method", method}}, SecondsBuckets()).Observe(seconds);
}

std::vector<prometheus::MetricFamily> ServerMetrics::Collect() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  families.push_back(Gauge("calib_evaluations_in_flight",
                           "Evaluations admitted and not yet ended",
                           static_cast<double>(admission_->in_flight())));
  families.push_back(Gauge("calib_memory_reserved_bytes",
                           "Bytes reserved by the evaluations in flight against "
                           "--memory-budget-bytes",
                           static_cast<double>(budget_->reserved())));
  families.push_back(Gauge("calib_memory_budget_bytes",
                           "--memory-budget-bytes: the most the evaluations may "
                           "reserve at once (0: no limit)",
                           static_cast<double>(budget_->limit())));
  families.push_back(Gauge("calib_memory_kept_for_reuse_bytes",
                           "Freed buffers of 32 MiB and more kept for the next "
                           "evaluation (lazily freed: the kernel takes them back under "
                           "memory pressure)",
                           static_cast<double>(KeptLargeBlockBytes())));
  return families;
}

}  // namespace calib
