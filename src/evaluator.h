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
// spent: every later call returns FAILED_PRECONDITION. Every store it grows is reserved
// first against StoreLimits::budget (RESOURCE_EXHAUSTED when it has no room), and Add
// and Finish return CANCELLED soon after the oneTBB task_group_context they run under is
// cancelled.
#ifndef CALIB_SRC_EVALUATOR_H_
#define CALIB_SRC_EVALUATOR_H_

#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "calib/v1/calibration.pb.h"
#include "src/fit_store.h"
#include "src/memory_budget.h"
#include "src/options.h"

namespace calib {

// Borrowed bytes of a Tensor: little-endian, row-major; the caller keeps them alive
// for the duration of the call that takes them.
struct TensorView {
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;
  std::string_view data;
};

// What an evaluation may hold beyond what its config asks (README, "Limits and memory").
struct StoreLimits {
  // Null: nothing is refused. Otherwise it must outlive the Evaluator.
  MemoryBudget* budget = nullptr;
  // The fit store's cap (logits and labels); beyond it the fits use a uniform sample.
  uint64_t fit_store_bytes = kDefaultFitStoreBytes;
};

class Evaluator {
 public:
  // INVALID_ARGUMENT naming the field for a bad config (see ResolveOptions);
  // RESOURCE_EXHAUSTED when the budget has no room for the accumulators the config
  // needs. Call it in the task_arena that Add and Finish will run in: the accumulators
  // alive at once grow with its concurrency.
  static absl::StatusOr<std::unique_ptr<Evaluator>> Create(
      const v1::EvaluationConfig& config, const StoreLimits& limits = {});

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
  // Samples (not ignored) accepted so far.
  virtual uint64_t samples() const = 0;
  // Bytes reserved now: the whole memory this evaluation holds, bar O(1) objects.
  virtual uint64_t reserved_bytes() const = 0;
};

}  // namespace calib

#endif  // CALIB_SRC_EVALUATOR_H_
