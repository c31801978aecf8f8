#include "src/bootstrap.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace calib {
namespace {

// SplitMix64's finaliser: a bijection on 64 bits with full avalanche.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9u;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebu;
  x ^= x >> 31;
  return x;
}

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15u;

// floor(2^64 P(X <= k)) for X ~ Poisson(1), k = 0..19, computed once with 50-digit
// arithmetic (mpmath) and written down so that every machine draws the same weights.
// Beyond 19 the tail is below 2^-64.
constexpr std::array<uint64_t, 20> kPoissonCdf = {
    0x5e2d58d8b3bcdf1au, 0xbc5ab1b16779be35u, 0xeb715e1dc1582dc2u, 0xfb23979734a252f1u,
    0xff1025f59174dc3du, 0xffd90f3ba4055e19u, 0xfffa8b71fc72c913u, 0xffff540c0914b3c9u,
    0xffffed1f4aa8f120u, 0xfffffe216e641462u, 0xffffffd4d85d3183u, 0xfffffffc6da262b4u,
    0xffffffffba12d178u, 0xfffffffffb07c64cu, 0xffffffffffab8ea5u, 0xfffffffffffabe22u,
    0xffffffffffffb11au, 0xfffffffffffffba1u, 0xffffffffffffffc5u, 0xfffffffffffffffdu};

// numpy.percentile's default (linear) on sorted values.
double Percentile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

v1::Interval MakeInterval(std::vector<double> values, double level) {
  v1::Interval out;
  if (values.empty()) return out;
  std::sort(values.begin(), values.end());
  out.set_lower(Percentile(values, (1 - level) / 2));
  out.set_upper(Percentile(values, (1 + level) / 2));
  return out;
}

}  // namespace

uint64_t SampleKey(uint64_t seed, uint64_t sample) {
  return Mix(Mix(seed + kGolden) ^ Mix(sample));
}

uint32_t PoissonWeight(uint64_t key, uint32_t replicate) {
  const uint64_t u = Mix(key + (uint64_t{replicate} + 1) * kGolden);
  // Branch-free over the likely values (P(X > 5) = 6e-4): a random branch per draw
  // would mispredict about half the time.
  uint32_t k = 0;
  for (size_t i = 0; i < 6; ++i) k += u >= kPoissonCdf[i];
  while (k < kPoissonCdf.size() && u >= kPoissonCdf[k]) ++k;
  return k;
}

void ReplicateSums::Add(uint64_t seed, uint64_t sample, bool correct, double nll,
                        double brier, uint32_t bin, double confidence, bool positive) {
  const uint64_t key = SampleKey(seed, sample);
  for (uint32_t b = 0; b < replicates_; ++b) {
    const double wd = PoissonWeight(key, b);
    double* s = &scalars_[size_t{b} * kScalars];
    s[0] += wd;
    s[1] += correct * wd;
    s[2] += wd > 0 ? wd * nll : 0.0;  // 0 * inf (a certain, wrong sample) is 0 here
    s[3] += wd * brier;
    double* m = &bins_[(size_t{b} * num_bins_ + bin) * 3];
    m[0] += wd;
    m[1] += positive * wd;
    m[2] += wd * confidence;
  }
}

void ReplicateSums::Merge(const ReplicateSums& o) {
  for (size_t i = 0; i < scalars_.size(); ++i) scalars_[i] += o.scalars_[i];
  for (size_t i = 0; i < bins_.size(); ++i) bins_[i] += o.bins_[i];
}

v1::BootstrapIntervals ReplicateSums::Intervals(double level) const {
  std::vector<double> ece, nll, accuracy, brier;
  for (uint32_t b = 0; b < replicates_; ++b) {
    const double* s = &scalars_[size_t{b} * kScalars];
    const double weight = s[0];
    if (weight == 0) continue;  // every sample drew 0: the replicate is empty
    accuracy.push_back(s[1] / weight);
    nll.push_back(s[2] / weight);
    brier.push_back(s[3] / weight);
    // sum_m (W_m / W) |A_m / W_m - C_m / W_m| = sum_m |A_m - C_m| / W.
    double gap = 0;
    for (uint32_t m = 0; m < num_bins_; ++m) {
      const double* bin = &bins_[(size_t{b} * num_bins_ + m) * 3];
      gap += std::abs(bin[1] - bin[2]);
    }
    ece.push_back(gap / weight);
  }
  v1::BootstrapIntervals out;
  out.set_level(level);
  out.set_samples(replicates_);
  *out.mutable_ece() = MakeInterval(std::move(ece), level);
  *out.mutable_nll() = MakeInterval(std::move(nll), level);
  *out.mutable_accuracy() = MakeInterval(std::move(accuracy), level);
  *out.mutable_brier() = MakeInterval(std::move(brier), level);
  return out;
}

}  // namespace calib
