// RowKernel: the per-row arithmetic of metrics.md over a run of rows — validation of
// every logit, the input-kind transform, softmax / sigmoid with log-sum-exp in double,
// confidence, correctness, NLL, Brier, entropy, top-k rank and bins — and the per-row
// terms of the temperature and Platt fits. SOFTMAX over LOGITS (without classwise bins)
// and the fits' terms over LOGITS run the vectorised passes of row_simd.h; the rest
// keeps the scalar double path. Const after construction: one
// RowKernel may serve many threads, each on its own rows and its own Sums.
#ifndef CALIB_SRC_ROW_KERNEL_H_
#define CALIB_SRC_ROW_KERNEL_H_

#include <cstdint>
#include <optional>
#include <string>

#include "calib/v1/calibration.pb.h"
#include "src/options.h"
#include "src/platt_fit.h"
#include "src/reliability_bins.h"
#include "src/row_simd.h"
#include "src/sums.h"
#include "src/temperature_fit.h"

namespace calib {

// Rows of logits with their decoded labels (see labels.h). Borrowed, not owned.
struct RowSource {
  v1::DType dtype = v1::DTYPE_FLOAT32;  // a float dtype, resolved
  const char* logits = nullptr;         // rows x num_classes values
  const int32_t* labels = nullptr;      // rows x samples_per_row values
  uint64_t rows = 0;
  uint64_t first_row = 0;  // global index of row 0, for messages
};

// The map scale * z + shift applied to every (transformed) logit before the activation:
// identity for the raw metrics, 1/T for temperature scaling, (a, b) for Platt.
struct Affine {
  double scale = 1;
  double shift = 0;
};

class RowKernel {
 public:
  explicit RowKernel(const Options& options) : options_(options) {}

  // Where the (confidence, correct) pairs go: `next` is samples[index], index counting
  // the samples (not ignored) of the whole evaluation, which keys the bootstrap.
  struct SampleSink {
    ConfidenceSample* next;
    uint64_t index;
  };

  // Validates rows [begin, end) of `src` and adds them to `sums`, writing one
  // (confidence, correct) pair per sample that is not ignored to `sink`.
  // Stops at the first bad value and returns INVALID_ARGUMENT naming its global row,
  // column and value (rows before it are added).
  absl::Status Accumulate(const RowSource& src, uint64_t begin, uint64_t end,
                          Affine affine, Sums* sums, SampleSink sink) const;

  // Sums (not means) over the samples of rows [begin, end) of the NLL of beta * z and
  // its derivatives in beta. `src` must have passed Accumulate.
  NllDerivatives TemperatureTerms(const RowSource& src, uint64_t begin, uint64_t end,
                                  double beta) const;

  // Sums over the samples of rows [begin, end) of the BCE of a * z + b, its gradient
  // and Hessian. SIGMOID only.
  PlattDerivatives PlattTerms(const RowSource& src, uint64_t begin, uint64_t end,
                              double a, double b) const;

  // SOFTMAX over LOGITS without classwise bins: the vectorised pass (row_simd.h), whose
  // raw pass (scale 1) also fills Sums::temperature_d1/d2 when fit_temperature is set.
  bool Vectorised() const;

 private:
  // Loads row r of src into z, transformed by the input kind. On a bad value returns
  // its message (naming global row, column and value).
  std::optional<std::string> LoadRow(const RowSource& src, uint64_t r, double* z) const;

  absl::Status AccumulateSoftmax(const RowSource& src, uint64_t begin, uint64_t end,
                                 double scale, Sums* sums, SampleSink sink) const;
  absl::Status AccumulateSigmoid(const RowSource& src, uint64_t begin, uint64_t end,
                                 Affine affine, Sums* sums, SampleSink sink) const;
  // Clears sums->looks_like_probabilities if the raw LOGITS row z is not a probability
  // vector (every value in [0, 1], and for softmax summing to 1).
  void NoteProbabilities(const double* z, Sums* sums) const;

  void AddSoftmaxRow(const double* z, int32_t label, Affine affine, Sums* sums,
                     SampleSink* sink) const;
  // x = a * z + b for one row, with its SigmoidTerms.
  void AddSigmoidRow(const double* x, SigmoidTerms terms, const int32_t* targets,
                     Sums* sums, SampleSink* sink) const;
  // Bins the sample and records it in `sink` and the bootstrap replicates.
  void AddSample(double confidence, bool positive, bool correct, double nll, double brier,
                 Sums* sums, SampleSink* sink) const;

  const Options options_;
};

}  // namespace calib

#endif  // CALIB_SRC_ROW_KERNEL_H_
