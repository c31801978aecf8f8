// LimitedEvaluator: an engine Evaluator behind calibd's --max-classes and --max-rows.
// Each limit is checked before the engine sees the config or stores a row, and going
// over one is RESOURCE_EXHAUSTED naming the limit and the flag that raises it; the
// engine itself reserves its stores against the memory budget of `limits.stores`.
// Like the Evaluator: not thread-safe, one caller at a time; Add and Finish compute in
// the caller's current oneTBB task_arena.
#ifndef CALIB_SERVER_LIMITED_EVALUATOR_H_
#define CALIB_SERVER_LIMITED_EVALUATOR_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"
#include "src/evaluator.h"

namespace calib {

struct EvaluationLimits {
  uint64_t max_rows = 0;     // 0: unlimited
  uint32_t max_classes = 0;  // 0: unlimited
  StoreLimits stores;        // --memory-budget-bytes and --fit-store-bytes
};

class LimitedEvaluator {
 public:
  static absl::StatusOr<std::unique_ptr<LimitedEvaluator>> Create(
      const v1::EvaluationConfig& config, const EvaluationLimits& limits);
  // Frees the engine's stores; after a large evaluation, also hands the freed memory
  // back to the system, so that the server's resident size falls back with them.
  ~LimitedEvaluator();

  // Rows are counted as logits bytes / (num_classes * dtype size), cumulatively over
  // every batch; a batch the engine would reject for its shape is left to the engine.
  absl::Status Add(const v1::Batch& batch);
  absl::StatusOr<v1::Report> Finish() { return evaluator_->Finish(); }
  // Samples the engine accepted so far.
  uint64_t samples() const { return evaluator_->samples(); }

 private:
  LimitedEvaluator(std::unique_ptr<Evaluator> evaluator, const EvaluationLimits& limits)
      : evaluator_(std::move(evaluator)), limits_(limits) {}

  std::unique_ptr<Evaluator> evaluator_;
  const EvaluationLimits limits_;
};

}  // namespace calib

#endif  // CALIB_SERVER_LIMITED_EVALUATOR_H_
