// Evaluator: one evaluation, from a config through any number of batches to a Report.
//
//   auto ev = Evaluator::Create(config);   // validates the config
//   ev->Add(batch) ... ;                   // validates and accumulates rows, in parallel
//   auto report = ev->Finish();            // bins, errors, fits; the Evaluator is spent
//
// Not thread-safe: one caller at a time. Add and Finish run their arithmetic with
// oneTBB in the caller's current task_arena, so the caller chooses the thread count by
// calling them inside arena.execute(). The Report is bit-identical whatever the thread
// count and however the rows were split into batches. After an error the Evaluator is
// spent: every later call returns FAILED_PRECONDITION.
#ifndef CALIB_SRC_EVALUATOR_H_
#define CALIB_SRC_EVALUATOR_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"
#include "src/options.h"

namespace calib {

// Borrowed bytes of a Tensor: little-endian, row-major; the caller keeps them alive
// for the duration of the call that takes them.
struct TensorView {
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  std::string_view data;
};

class Evaluator {
 public:
  // INVALID_ARGUMENT naming the field for a bad config (see ResolveOptions).
  static absl::StatusOr<std::unique_ptr<Evaluator>> Create(
      const v1::EvaluationConfig& config);

  virtual ~Evaluator() = default;

  // Validates every value of the batch, then folds its rows in. Errors are
  // INVALID_ARGUMENT and name the byte and row counts, or the first bad row, column and
  // value. An empty batch is fine. Rows are numbered from the first row ever added.
  virtual absl::Status Add(TensorView logits, TensorView labels) = 0;
  absl::Status Add(const v1::Batch& batch) {
    return Add({batch.logits().dtype(), batch.logits().data()},
               {batch.labels().dtype(), batch.labels().data()});
  }

  // INVALID_ARGUMENT when no sample was seen (nothing sent, or everything ignored).
  virtual absl::StatusOr<v1::Report> Finish() = 0;

  // The resolved config.
  virtual const Options& options() const = 0;
  // Rows received so far, ignored ones included: for the server's --max-rows.
  virtual uint64_t rows() const = 0;
};

}  // namespace calib

#endif  // CALIB_SRC_EVALUATOR_H_
