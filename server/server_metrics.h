// ServerMetrics: calibd's Prometheus series, served at /metrics by an Exposer on
// --metrics-listen. Counters and the histogram are kept in a prometheus::Registry; the
// gauges of evaluations in flight and of memory are read from the Admission and the
// MemoryBudget at each scrape, so they are never stale. Thread-safe; `admission` and
// `budget` must outlive it.
#ifndef CALIB_SERVER_SERVER_METRICS_H_
#define CALIB_SERVER_SERVER_METRICS_H_

#include <grpcpp/support/status.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/admission.h"
#include "src/memory_budget.h"

namespace calib {

class ServerMetrics final : public prometheus::Collectable {
 public:
  ServerMetrics(const Admission* admission, const MemoryBudget* budget);

  // calib_calls_total{method, code}: every call, when it ends.
  void CallEnded(const std::string& method, grpc::StatusCode code);
  // calib_received_bytes_total{method}: the bytes of each message received.
  void Received(const std::string& method, uint64_t bytes);
  // calib_received_samples_total{method}: samples the engine accepted.
  void Samples(const std::string& method, uint64_t samples);
  // calib_evaluation_seconds{method}: the duration of each evaluation call.
  void EvaluationEnded(const std::string& method, double seconds);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const Admission* const admission_;
  const MemoryBudget* const budget_;
  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& calls_;
  prometheus::Family<prometheus::Counter>& bytes_;
  prometheus::Family<prometheus::Counter>& samples_;
  prometheus::Family<prometheus::Histogram>& seconds_;
};

}  // namespace calib

#endif  // CALIB_SERVER_SERVER_METRICS_H_
