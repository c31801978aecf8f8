#include "src/sums.h"

namespace calib {

void Sums::Merge(const Sums& o) {
  samples += o.samples;
  correct += o.correct;
  nll += o.nll;
  brier += o.brier;
  confidence += o.confidence;
  entropy += o.entropy;
  temperature_d1 += o.temperature_d1;
  temperature_d2 += o.temperature_d2;
  for (size_t i = 0; i < top_k.size(); ++i) top_k[i] += o.top_k[i];
  for (size_t i = 0; i < bins.size(); ++i) bins[i].Merge(o.bins[i]);
  for (size_t i = 0; i < class_bins.size(); ++i) class_bins[i].Merge(o.class_bins[i]);
  looks_like_probabilities = looks_like_probabilities && o.looks_like_probabilities;
  replicates.Merge(o.replicates);
}

}  // namespace calib
