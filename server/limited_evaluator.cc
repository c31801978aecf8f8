#include "server/limited_evaluator.h"

#include <malloc.h>

#include "absl/strings/str_cat.h"
#include "src/status_macros.h"
#include "src/tensor.h"

namespace calib {

absl::StatusOr<std::unique_ptr<LimitedEvaluator>> LimitedEvaluator::Create(
    const v1::EvaluationConfig& config, const EvaluationLimits& limits) {
  // Before the engine, which sizes its accumulators by num_classes.
  if (limits.max_classes != 0 && config.num_classes() > limits.max_classes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "config.num_classes ", config.num_classes(), " exceeds the server limit of ",
        limits.max_classes, " classes (raise it with --max-classes)"));
  }
  CALIB_ASSIGN_OR_RETURN(std::unique_ptr<Evaluator> evaluator,
                         Evaluator::Create(config, limits.stores));
  return std::unique_ptr<LimitedEvaluator>(
      new LimitedEvaluator(std::move(evaluator), limits));
}

LimitedEvaluator::~LimitedEvaluator() {
  // glibc keeps freed blocks below its mmap threshold (which rises up to 32 MiB as large
  // blocks are freed) in its per-thread arenas: resident until trimmed. Trimming walks
  // every arena, so it is done only after evaluations large enough to matter.
  constexpr uint64_t kTrimBytes = uint64_t{64} << 20;
  const uint64_t held = evaluator_->reserved_bytes();
  evaluator_.reset();
  if (held >= kTrimBytes) malloc_trim(0);
}

absl::Status LimitedEvaluator::Add(const v1::Batch& batch) {
  if (limits_.max_rows != 0) {
    const uint64_t row_bytes = uint64_t{evaluator_->options().num_classes} *
                               DTypeSize(LogitsDType(batch.logits().dtype()));
    if (row_bytes != 0) {
      const uint64_t rows = batch.logits().data().size() / row_bytes;
      const uint64_t total = evaluator_->rows() + rows;
      if (total > limits_.max_rows) {
        return absl::ResourceExhaustedError(
            absl::StrCat("a batch of ", rows, " rows brings the evaluation to ", total,
                         " rows, which exceeds the server limit of ", limits_.max_rows,
                         " rows (raise it with --max-rows)"));
      }
    }
  }
  return evaluator_->Add(batch);
}

}  // namespace calib
