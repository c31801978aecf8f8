// The per-target half of row_simd.h: row_simd.cc includes it once per Highway target
// through hwy/foreach_target.h, hence the toggled include guard. Stateless functions.
#if defined(CALIB_SRC_ROW_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef CALIB_SRC_ROW_SIMD_INL_H_
#undef CALIB_SRC_ROW_SIMD_INL_H_
#else
#define CALIB_SRC_ROW_SIMD_INL_H_
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/labels.h"
#include "src/row_simd.h"
#include "src/tensor.h"

HWY_BEFORE_NAMESPACE();
namespace calib {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// How each dtype reaches the lanes: float16 and bfloat16 are widened in registers.
struct SrcF32 {
  using Raw = float;
  using Lane = float;
  template <class D>
  static HWY_INLINE hn::Vec<D> Load(D d, const Raw* p) {
    return hn::LoadU(d, p);
  }
  template <class DD>
  static HWY_INLINE hn::Vec<DD> LoadWide(DD dd, const Raw* p) {
    return hn::PromoteTo(dd, hn::LoadU(hn::Rebind<float, DD>(), p));
  }
  static float Scalar(const Raw* p) {
    float v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
};

struct SrcF64 {
  using Raw = double;
  using Lane = double;
  template <class D>
  static HWY_INLINE hn::Vec<D> Load(D d, const Raw* p) {
    return hn::LoadU(d, p);
  }
  template <class DD>
  static HWY_INLINE hn::Vec<DD> LoadWide(DD dd, const Raw* p) {
    return hn::LoadU(dd, p);
  }
  static double Scalar(const Raw* p) {
    double v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
};

// float16 and bfloat16: 16-bit patterns that Highway promotes, and `ToFloat` (tensor.h)
// decodes one at a time.
template <class RawT, float (*ToFloat)(uint16_t)>
struct SrcHalf {
  using Raw = RawT;
  using Lane = float;
  template <class D>
  static HWY_INLINE hn::Vec<D> Load(D d, const Raw* p) {
    const hn::Rebind<Raw, D> dh;
    const auto raw = hn::LoadU(dh, p);
    const hn::Vec<D> v = hn::PromoteTo(d, raw);
#if HWY_TARGET >= HWY_SSE4
    if constexpr (std::is_same_v<Raw, hwy::float16_t>) return WithNonFinite(d, raw, v);
#endif
    return v;
  }
  template <class DD>
  static HWY_INLINE hn::Vec<DD> LoadWide(DD dd, const Raw* p) {
    return hn::PromoteTo(dd, Load(hn::Rebind<float, DD>(), p));
  }
  static float Scalar(const Raw* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof(h));
    return ToFloat(h);
  }

  // Highway 1.0.3 converts float16 without F16C (SSE4 and older, and the scalar
  // fallbacks) as if exponent 31 were a normal one: infinities and NaNs came out as
  // finite values near 2^16 and passed validation. Those lanes are set here from the
  // bits (row_kernel_test checks every target).
  template <class D, class VH>
  static HWY_INLINE hn::Vec<D> WithNonFinite(D d, VH raw, hn::Vec<D> v) {
    const hn::RebindToUnsigned<D> du;
    const hn::Rebind<uint16_t, D> du16;
    const auto bits = hn::PromoteTo(du, hn::BitCast(du16, raw));
    const auto exponent = hn::Set(du, 0x7C00u);
    const auto special = hn::Eq(hn::And(bits, exponent), exponent);
    const auto sign = hn::ShiftLeft<16>(hn::And(bits, hn::Set(du, 0x8000u)));
    const auto payload = hn::ShiftLeft<13>(hn::And(bits, hn::Set(du, 0x3FFu)));
    const auto wide = hn::Or(sign, hn::Or(hn::Set(du, 0x7F800000u), payload));
    return hn::IfThenElse(hn::RebindMask(d, special), hn::BitCast(d, wide), v);
  }
};
using SrcF16 = SrcHalf<hwy::float16_t, HalfToFloat>;
using SrcBF16 = SrcHalf<hwy::bfloat16_t, BFloat16ToFloat>;

// The passes compute in double lanes: float exp's ~1e-7 relative error would break
// metrics.md's 1e-9 on confidences and bins. ExpNonPositive takes x >= kMinExpArg, where
// 2^q is still a normal number; a row whose scaled range stays within kUnboundedRange
// needs no lower bound on the argument.
constexpr double kMinExpArg = -708;
constexpr double kUnboundedRange = 700;

// ExpNonPositive: exp(x) for x in [kMinExpArg, 0] in double lanes, to 3e-13 relative
// (row_kernel_test checks it over the whole range, on every target; the end-to-end tests
// hold metrics to 1e-9, far above what this moves). Cheaper than hn::Exp, whose
// |r| <= ln(2) / 2 takes degree 12, since the exp is most of a pass: x = (n / N) ln 2 + r
// with a table of 2^(j/N) and a polynomial fitted to relative error by
// bench/fit_exp_polynomial.py. Rounding x / step by adding 1.5 * 2^52 leaves n in the
// low bits of t (no float<->int conversions) and n as a double in nf; one FMA reduces x,
// erring by less than 2^-53 step n.
template <class V>
struct ExpReduction {
  V t, nf, r;
};
template <class D, class V = hn::Vec<D>>
HWY_INLINE ExpReduction<V> ReduceExpArg(D d, V x, double inv_step, double step) {
  const V magic = hn::Set(d, 6755399441055744.0);  // 1.5 * 2^52
  const V t = hn::MulAdd(x, hn::Set(d, inv_step), magic);
  const V nf = hn::Sub(t, magic);
  return {t, nf, hn::MulAdd(nf, hn::Set(d, -step), x)};
}

// e^r - 1 = r + r^2 P(r), P's coefficients c2, c3, ... in `c`.
template <class D, class V, size_t kCount>
HWY_INLINE V ExpMinusOne(D d, V r, const double (&c)[kCount]) {
  V poly = hn::Set(d, c[kCount - 1]);
  for (size_t k = kCount - 1; k-- > 0;) poly = hn::MulAdd(poly, r, hn::Set(d, c[k]));
  return hn::MulAdd(hn::Mul(r, r), poly, r);
}

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// With AVX-512, N = 16: the table fits in two registers, one vpermt2pd reads it (only the
// low 4 bits of an index count: j = n mod 16) and vscalefpd applies 2^q, q = floor(n /
// 16). With |r| <= ln(2)/32 a degree-5 polynomial (--table 16 --degree 5) is within
// 6e-15, and a vector takes 12 operations instead of the portable version's 17 (row pass
// 100,000 x 1,000 float32 31 -> 26 ms, 4,096 x 50,257 53 -> 43 ms). Reducing x errs by
// less than 1.5e-18 n <= 2.5e-14.
template <class D>
HWY_INLINE hn::Vec<D> ExpNonPositive(D d, hn::Vec<D> x) {
  alignas(64) static constexpr double kPow2[16] = {
      0x1.0000000000000p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0,
      0x1.2387a6e756238p+0, 0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0,
      0x1.4bfdad5362a27p+0, 0x1.5ab07dd485429p+0, 0x1.6a09e667f3bcdp+0,
      0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
      0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0, 0x1.d5818dcfba487p+0,
      0x1.ea4afa2a490dap+0};
  static constexpr double kP[] = {0.4999999998686631, 0.16666666670632638,
                                  0.04166757308516188, 0.008333321164697887};
  const auto [t, nf, r] = ReduceExpArg(d, x, 23.083120654223414, 0.04332169878499658);
  const auto em1 = ExpMinusOne(d, r, kP);
  const auto pow2 = hn::Vec<D>{_mm512_permutex2var_pd(
      hn::Load(d, kPow2).raw, _mm512_castpd_si512(t.raw), hn::Load(d, kPow2 + 8).raw)};
  const auto scaled = hn::MulAdd(pow2, em1, pow2);
  return hn::Vec<D>{_mm512_scalef_pd(scaled.raw, hn::Mul(nf, hn::Set(d, 1.0 / 16)).raw)};
}
#else
// Elsewhere N = 2: |r| <= ln(2) / 4 and a degree-7 polynomial; the table index and the
// exponent of 2^q come from t's bits by shifts. Reducing x errs by less than
// 1.2e-17 n <= 2.4e-14.
template <class D, class V>
HWY_INLINE V ExpNonPositive(D d, V x) {
  const hn::RebindToUnsigned<D> du;
  static constexpr double kP[] = {0.5000000001149775,    0.16666666654431805,
                                  0.041666642539938285,  0.008333343248496106,
                                  0.0013903026049847053, 0.00019829379894143842};
  const auto [t, nf, r] = ReduceExpArg(d, x, 2.8853900817779268, 0.34657359027997264);
  const V p = hn::Add(ExpMinusOne(d, r, kP), hn::Set(d, 1.0));
  // t's bits are 1.5 * 2^52's (even, and a multiple of 2^13) plus n = 2q + j, j in
  // {0, 1}: bit 0 is j, and shifting out j and then into the exponent field leaves
  // exactly q * 2^52. Added to the bits of 2^(j/2), that makes 2^(n/2); q >= -1022
  // keeps it a normal number.
  const auto bits = hn::BitCast(du, t);
  const auto odd = hn::TestBit(bits, hn::Set(du, 1));
  const auto table = hn::IfThenElse(odd, hn::Set(du, 0x3FF6A09E667F3BCDull),  // sqrt 2
                                    hn::Set(du, 0x3FF0000000000000ull));      // 1
  const auto scale = hn::Add(table, hn::ShiftLeft<52>(hn::ShiftRight<1>(bits)));
  return hn::Mul(p, hn::BitCast(d, scale));
}
#endif

// A row's passes after MaxMin compute from cache, and MaxMin waits on memory with
// little arithmetic to hide it; so while a pass works on a row it prefetches the next
// row's values at the same offsets, and the next MaxMin reads them from cache
// (4,096 x 50,257 float32: 68 -> 50 ms a row pass).
template <class Raw>
HWY_INLINE void PrefetchValues(const Raw* p, size_t count) {
  constexpr size_t kCacheLine = 64;
  const char* bytes = reinterpret_cast<const char*>(p);
  for (size_t b = 0; b < count * sizeof(Raw); b += kCacheLine) hwy::Prefetch(bytes + b);
}

// Calls body(v, k, valid) for every vector of the row: whole vectors with valid = null,
// then the last partial one from a copy padded with the row's first value, with `valid`
// marking its real lanes. `group` whole vectors at a time go to group_body(p + k, k).
template <class Src, class D, class Body>
HWY_INLINE void ForEachVector(D d, const typename Src::Raw* p, uint32_t c,
                              const Body& body) {
  using Raw = typename Src::Raw;
  auto load = [d](const Raw* q) HWY_ATTR {
    if constexpr (std::is_same_v<hn::TFromD<D>, double>) {
      return Src::LoadWide(d, q);
    } else {
      return Src::Load(d, q);
    }
  };
  const size_t n = hn::Lanes(d);
  size_t k = 0;
  for (; k + n <= c; k += n) body(load(p + k), k, hn::FirstN(d, n), false);
  if (k < c) {
    HWY_ALIGN Raw buf[HWY_MAX_BYTES / sizeof(float)];
    for (size_t i = 0; i < n; ++i) std::memcpy(&buf[i], p, sizeof(Raw));
    std::memcpy(buf, p + k, (c - k) * sizeof(Raw));
    body(load(buf), k, hn::FirstN(d, c - k), true);
  }
}

// Max and min of a row; a NaN may or may not show in them (the second pass finds it).
template <class Src, class D>
HWY_INLINE void MaxMin(D d, const typename Src::Raw* p, uint32_t c,
                       typename Src::Lane* max, typename Src::Lane* min) {
  const size_t n = hn::Lanes(d);
  auto first = hn::Set(d, Src::Scalar(p));
  auto mx0 = first, mx1 = first, mn0 = first, mn1 = first;
  size_t k = 0;
  for (; k + 2 * n <= c; k += 2 * n) {
    const auto v0 = Src::Load(d, p + k);
    const auto v1 = Src::Load(d, p + k + n);
    mx0 = hn::Max(mx0, v0);
    mn0 = hn::Min(mn0, v0);
    mx1 = hn::Max(mx1, v1);
    mn1 = hn::Min(mn1, v1);
  }
  // The rest: whole vectors and a padded tail (padding repeats the first value).
  ForEachVector<Src>(d, p + k, c - static_cast<uint32_t>(k),
                     [&](auto v, size_t, auto, bool) HWY_ATTR {
                       mx0 = hn::Max(mx0, v);
                       mn0 = hn::Min(mn0, v);
                     });
  *max = hn::GetLane(hn::MaxOfLanes(d, hn::Max(mx0, mx1)));
  *min = hn::GetLane(hn::MinOfLanes(d, hn::Min(mn0, mn1)));
}

// The softmax pass. kBounded: some scaled gap may pass kMinExpArg, so those lanes are
// dropped (their e is below 1e-37 of the sum) and clamped; kScaled: scale != 1;
// kMoment2: sum_ed2 too.
template <class Src, bool kBounded, bool kScaled, bool kRank, bool kMoment2>
HWY_NOINLINE void SoftmaxPass(const typename Src::Raw* p, uint32_t c,
                              typename Src::Lane m, double scale,
                              typename Src::Lane z_label, const typename Src::Raw* next,
                              SoftmaxRowStats* out) {
  using T = double;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const V mv = hn::Set(d, m);
  const V zero = hn::Zero(d);
  const V min_arg = hn::Set(d, kMinExpArg);
  const V scale_v = hn::Set(d, scale);
  const V zl = hn::Set(d, z_label);
  V rest = zero, sq = zero, ed = zero, ed2 = zero;
  bool bad = false;
  uint32_t ties = 0, argmax = 0, above = 0, level = 0;

  // e for one vector, excluding the lanes equal to m (counted in `ties`).
  auto step = [&](V v, size_t k, auto valid, bool tail) HWY_ATTR {
    const V x = hn::Sub(v, mv);
    V arg = x;
    if constexpr (kScaled) arg = hn::Mul(x, scale_v);
    auto keep = hn::Lt(x, zero);
    if (tail) keep = hn::And(keep, valid);
    if (HWY_UNLIKELY(!hn::AllTrue(d, tail ? hn::Or(keep, hn::Not(valid)) : keep))) {
      auto tie = hn::Eq(v, mv);
      if (tail) tie = hn::And(tie, valid);
      // Neither below m nor equal to it: NaN.
      if (!hn::AllFalse(d, hn::AndNot(hn::Or(keep, tie), valid))) bad = true;
      if (ties == 0 && !hn::AllFalse(d, tie)) {
        argmax = static_cast<uint32_t>(k + hn::FindFirstTrue(d, tie));
      }
      ties += static_cast<uint32_t>(hn::CountTrue(d, tie));
    }
    if constexpr (kBounded) {
      keep = hn::And(keep, hn::Ge(arg, min_arg));
      arg = hn::Max(arg, min_arg);
    }
    if constexpr (kRank) {
      auto gt = hn::Gt(v, zl);
      auto eq = hn::Eq(v, zl);
      if (tail) {
        gt = hn::And(gt, valid);
        eq = hn::And(eq, valid);
      }
      above += static_cast<uint32_t>(hn::CountTrue(d, gt));
      level += static_cast<uint32_t>(hn::CountTrue(d, eq));
    }
    const V e = hn::IfThenElseZero(keep, ExpNonPositive(d, arg));
    sq = hn::MulAdd(e, e, sq);
    ed = hn::MulAdd(e, arg, ed);
    // Apart from ed, not instead of it: sum_ed keeps the same bits either way.
    if constexpr (kMoment2) ed2 = hn::MulAdd(hn::Mul(e, arg), arg, ed2);
    return e;
  };

  const size_t n = hn::Lanes(d);
  const auto all = hn::FirstN(d, n);
  size_t k = 0;
  // Groups of 4 independent vectors keep the exp pipelines busy.
  for (; k + 4 * n <= c; k += 4 * n) {
    PrefetchValues(next + k, 4 * n);
    const V e0 = step(Src::LoadWide(d, p + k), k, all, false);
    const V e1 = step(Src::LoadWide(d, p + k + n), k + n, all, false);
    const V e2 = step(Src::LoadWide(d, p + k + 2 * n), k + 2 * n, all, false);
    const V e3 = step(Src::LoadWide(d, p + k + 3 * n), k + 3 * n, all, false);
    rest = hn::Add(rest, hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
  }
  ForEachVector<Src>(d, p + k, c - static_cast<uint32_t>(k),
                     [&](V v, size_t j, auto valid, bool tail)
                         HWY_ATTR { rest = hn::Add(rest, step(v, k + j, valid, tail)); });
  out->finite = !bad;
  out->argmax = argmax;
  out->ties = ties;
  out->rest = hn::GetLane(hn::SumOfLanes(d, rest));
  out->rest_sq = hn::GetLane(hn::SumOfLanes(d, sq));
  out->sum_ed = hn::GetLane(hn::SumOfLanes(d, ed));
  if constexpr (kMoment2) out->sum_ed2 = hn::GetLane(hn::SumOfLanes(d, ed2));
  out->above = above;
  out->level = level;
}

template <class Src, bool kBounded, bool kScaled, bool kMoment2>
void SoftmaxPassRank(const typename Src::Raw* p, uint32_t c, typename Src::Lane m,
                     double scale, int32_t label, const typename Src::Raw* next,
                     SoftmaxRowStats* out) {
  if (label >= 0) {
    SoftmaxPass<Src, kBounded, kScaled, true, kMoment2>(
        p, c, m, scale, Src::Scalar(p + label), next, out);
  } else {
    SoftmaxPass<Src, kBounded, kScaled, false, kMoment2>(p, c, m, scale, 0, next, out);
  }
}

template <class Src, bool kBounded>
void SoftmaxPassScaled(const typename Src::Raw* p, uint32_t c, typename Src::Lane m,
                       double scale, int32_t label, bool moment2,
                       const typename Src::Raw* next, SoftmaxRowStats* out) {
  if (scale != 1) {
    SoftmaxPassRank<Src, kBounded, true, false>(p, c, m, scale, label, next, out);
  } else if (moment2) {
    SoftmaxPassRank<Src, kBounded, false, true>(p, c, m, scale, label, next, out);
  } else {
    SoftmaxPassRank<Src, kBounded, false, false>(p, c, m, scale, label, next, out);
  }
}

template <class Src>
void SoftmaxRowT(const typename Src::Raw* p, uint32_t c, double scale, int32_t label,
                 bool moment2, const typename Src::Raw* next, SoftmaxRowStats* out) {
  using T = typename Src::Lane;
  const hn::ScalableTag<T> d;
  T m, mn;
  MaxMin<Src>(d, p, c, &m, &mn);
  out->max = m;
  out->min = mn;
  if (!std::isfinite(m) || !std::isfinite(mn)) {
    out->finite = false;
    return;
  }
  if ((static_cast<double>(m) - mn) * scale > kUnboundedRange) {
    SoftmaxPassScaled<Src, true>(p, c, m, scale, label, moment2, next, out);
  } else {
    SoftmaxPassScaled<Src, false>(p, c, m, scale, label, moment2, next, out);
  }
}

// Rows of up to kNarrowClasses logits go a vector of rows at a time, a row in each lane
// (widened to double and transposed through a small buffer): a row-at-a-time pass spent
// most of such a row on its partial vector and six horizontal reductions. Each lane
// computes what SoftmaxRowT does for its row, from the same e_k, summed in class order.
constexpr uint32_t kNarrowClasses = 24;

constexpr size_t kMaxDoubleLanes = HWY_MAX_BYTES / sizeof(double);

// Rows first .. first + count of c values, widened, into col[k * lanes + r]: value k of
// row first + r. Lanes past the last row repeat it; their results are dropped. The rows
// are one contiguous block, decoded a vector at a time as the other passes load.
template <class Src>
HWY_INLINE void TransposeRows(const typename Src::Raw* p, uint64_t first, size_t count,
                              size_t lanes, uint32_t c, double* col) {
  using Lane = typename Src::Lane;
  const hn::ScalableTag<Lane> dl;
  HWY_ALIGN Lane flat[kNarrowClasses * kMaxDoubleLanes];
  const auto* block = p + first * c;
  const size_t n = count * c, step = hn::Lanes(dl);
  size_t i = 0;
  for (; i + step <= n; i += step) hn::Store(Src::Load(dl, block + i), dl, flat + i);
  for (; i < n; ++i) flat[i] = Src::Scalar(block + i);
  for (size_t r = 0; r < lanes; ++r) {
    const Lane* z = flat + std::min(r, count - 1) * c;
    for (uint32_t k = 0; k < c; ++k) col[k * lanes + r] = z[k];
  }
}

// Stores the vectors to res[0], res[1], ..., from which each row reads its lane.
template <class D, class... V>
HWY_INLINE void StoreEach(D d, double (*res)[kMaxDoubleLanes], V... v) {
  size_t i = 0;
  (hn::Store(v, d, res[i++]), ...);
}

template <class Src>
void SoftmaxNarrowRowsT(const char* rows, uint64_t n, uint32_t c, double scale,
                        const int32_t* rank_labels, bool moment2, SoftmaxRowStats* out) {
  const hn::ScalableTag<double> d;
  using V = hn::Vec<decltype(d)>;
  const size_t lanes = hn::Lanes(d);
  const auto* p = reinterpret_cast<const typename Src::Raw*>(rows);
  HWY_ALIGN double col[kNarrowClasses * kMaxDoubleLanes];
  HWY_ALIGN double label_z[kMaxDoubleLanes];
  HWY_ALIGN double res[11][kMaxDoubleLanes];
  const V zero = hn::Zero(d), one = hn::Set(d, 1.0), min_arg = hn::Set(d, kMinExpArg);
  const V scale_v = hn::Set(d, scale);
  for (uint64_t first = 0; first < n; first += lanes) {
    const size_t count = static_cast<size_t>(std::min<uint64_t>(lanes, n - first));
    TransposeRows<Src>(p, first, count, lanes, c, col);
    for (size_t r = 0; r < lanes; ++r) {
      const int32_t label = rank_labels[first + std::min(r, count - 1)];
      // NaN: no rank counts (every comparison with it is false).
      label_z[r] = label >= 0 ? col[uint32_t(label) * lanes + r]
                              : std::numeric_limits<double>::quiet_NaN();
    }
    V m = hn::Load(d, col), mn = m;
    auto bad = hn::Not(hn::IsFinite(m));
    for (uint32_t k = 1; k < c; ++k) {
      const V v = hn::Load(d, col + k * lanes);
      m = hn::Max(m, v);
      mn = hn::Min(mn, v);
      bad = hn::Or(bad, hn::Not(hn::IsFinite(v)));
    }
    const V zl = hn::Load(d, label_z);
    V rest = zero, sq = zero, ed = zero, ed2 = zero, ties = zero, argmax = zero,
      above = zero, level = zero;
    for (uint32_t k = 0; k < c; ++k) {
      // In a lane with a NaN or an infinity these sums mean nothing (the caller reads
      // only `finite`); the counts stay small integers all the same.
      const V v = hn::Load(d, col + k * lanes);
      const V x = hn::Sub(v, m);
      V arg = scale == 1 ? x : hn::Mul(x, scale_v);
      const auto tie = hn::Eq(v, m);
      argmax = hn::IfThenElse(hn::And(tie, hn::Eq(ties, zero)), hn::Set(d, k), argmax);
      ties = hn::Add(ties, hn::IfThenElseZero(tie, one));
      // Below kMinExpArg e is under 1e-307 of the max's 1: dropped, as SoftmaxPass does
      // for the rows whose range reaches that far (for the others this changes nothing).
      const auto keep = hn::And(hn::Lt(x, zero), hn::Ge(arg, min_arg));
      arg = hn::Max(arg, min_arg);
      const V e = hn::IfThenElseZero(keep, ExpNonPositive(d, arg));
      rest = hn::Add(rest, e);
      sq = hn::MulAdd(e, e, sq);
      ed = hn::MulAdd(e, arg, ed);
      if (moment2) ed2 = hn::MulAdd(hn::Mul(e, arg), arg, ed2);
      above = hn::Add(above, hn::IfThenElseZero(hn::Gt(v, zl), one));
      level = hn::Add(level, hn::IfThenElseZero(hn::Eq(v, zl), one));
    }
    StoreEach(d, res, hn::IfThenElseZero(bad, one), m, mn, argmax, ties, rest, sq, ed,
              ed2, above, level);
    for (size_t r = 0; r < count; ++r) {
      SoftmaxRowStats& st = out[first + r];
      st.finite = res[0][r] == 0;
      st.max = res[1][r];
      st.min = res[2][r];
      st.argmax = static_cast<uint32_t>(res[3][r]);
      st.ties = static_cast<uint32_t>(res[4][r]);
      st.rest = res[5][r];
      st.rest_sq = res[6][r];
      st.sum_ed = res[7][r];
      st.sum_ed2 = res[8][r];
      st.above = static_cast<uint32_t>(res[9][r]);
      st.level = static_cast<uint32_t>(res[10][r]);
    }
  }
}

template <class Src>
void SoftmaxRowsT(const char* rows, uint64_t n, uint32_t c, double scale,
                  const int32_t* rank_labels, bool moment2, SoftmaxRowStats* out) {
  if (c <= kNarrowClasses) {
    return SoftmaxNarrowRowsT<Src>(rows, n, c, scale, rank_labels, moment2, out);
  }
  const auto* p = reinterpret_cast<const typename Src::Raw*>(rows);
  for (uint64_t r = 0; r < n; ++r, p += c) {
    // The last row "prefetches" itself: the chunk may end where the batch does.
    SoftmaxRowT<Src>(p, c, scale, rank_labels[r], moment2, r + 1 < n ? p + c : p,
                     &out[r]);
  }
}

// The temperature pass: e = exp(beta z'), z' = z - m; sums of e, e z', e z'^2.
template <class Src, bool kBounded>
HWY_NOINLINE void TemperaturePass(const typename Src::Raw* p, uint32_t c,
                                  typename Src::Lane m, double beta,
                                  const typename Src::Raw* next,
                                  TemperatureRowSums* out) {
  using T = double;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const V mv = hn::Set(d, m);
  const V zero = hn::Zero(d);
  const V min_arg = hn::Set(d, kMinExpArg);
  // Where e > 0, |z'| <= 708 / beta <= 7.08e14: clamping below that keeps z'^2 finite
  // without changing any term.
  const V min_gap = hn::Set(d, T(-1e15));
  const V beta_v = hn::Set(d, beta);
  V rest = zero, ez = zero, ez2 = zero;
  uint32_t ties = 0;

  auto step = [&](V v, auto valid, bool tail) HWY_ATTR {
    V x = hn::Sub(v, mv);
    if constexpr (kBounded) x = hn::Max(x, min_gap);
    V arg = hn::Mul(x, beta_v);
    auto keep = hn::Lt(x, zero);
    if (tail) keep = hn::And(keep, valid);
    if (HWY_UNLIKELY(!hn::AllTrue(d, tail ? hn::Or(keep, hn::Not(valid)) : keep))) {
      ties += static_cast<uint32_t>(
          hn::CountTrue(d, tail ? hn::AndNot(keep, valid) : hn::Not(keep)));
    }
    if constexpr (kBounded) {
      keep = hn::And(keep, hn::Ge(arg, min_arg));
      arg = hn::Max(arg, min_arg);
    }
    const V e = hn::IfThenElseZero(keep, ExpNonPositive(d, arg));
    const V exz = hn::Mul(e, x);
    ez = hn::Add(ez, exz);
    ez2 = hn::MulAdd(exz, x, ez2);
    return e;
  };

  const size_t n = hn::Lanes(d);
  const auto all = hn::FirstN(d, n);
  size_t k = 0;
  for (; k + 4 * n <= c; k += 4 * n) {
    PrefetchValues(next + k, 4 * n);
    const V e0 = step(Src::LoadWide(d, p + k), all, false);
    const V e1 = step(Src::LoadWide(d, p + k + n), all, false);
    const V e2 = step(Src::LoadWide(d, p + k + 2 * n), all, false);
    const V e3 = step(Src::LoadWide(d, p + k + 3 * n), all, false);
    rest = hn::Add(rest, hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
  }
  ForEachVector<Src>(d, p + k, c - static_cast<uint32_t>(k),
                     [&](V v, size_t, auto valid, bool tail)
                         HWY_ATTR { rest = hn::Add(rest, step(v, valid, tail)); });
  out->ties = ties;
  out->rest = hn::GetLane(hn::SumOfLanes(d, rest));
  out->sum_ez = hn::GetLane(hn::SumOfLanes(d, ez));
  out->sum_ez2 = hn::GetLane(hn::SumOfLanes(d, ez2));
}

template <class Src>
void TemperatureRowT(const typename Src::Raw* p, uint32_t c, double beta,
                     const typename Src::Raw* next, TemperatureRowSums* out) {
  using T = typename Src::Lane;
  const hn::ScalableTag<T> d;
  T m, mn;
  MaxMin<Src>(d, p, c, &m, &mn);
  out->max = m;
  if ((static_cast<double>(m) - mn) * beta > kUnboundedRange) {
    TemperaturePass<Src, true>(p, c, m, beta, next, out);
  } else {
    TemperaturePass<Src, false>(p, c, m, beta, next, out);
  }
}

// TemperatureRowT for rows of up to kNarrowClasses, a row a lane, as SoftmaxNarrowRowsT.
template <class Src>
void TemperatureNarrowRowsT(const char* rows, uint64_t n, uint32_t c, double beta,
                            TemperatureRowSums* out) {
  const hn::ScalableTag<double> d;
  using V = hn::Vec<decltype(d)>;
  const size_t lanes = hn::Lanes(d);
  const auto* p = reinterpret_cast<const typename Src::Raw*>(rows);
  HWY_ALIGN double col[kNarrowClasses * kMaxDoubleLanes];
  HWY_ALIGN double res[5][kMaxDoubleLanes];
  const V zero = hn::Zero(d), one = hn::Set(d, 1.0), min_arg = hn::Set(d, kMinExpArg);
  // As in TemperaturePass: a no-op unless beta * range passes kUnboundedRange.
  const V min_gap = hn::Set(d, -1e15);
  const V beta_v = hn::Set(d, beta);
  for (uint64_t first = 0; first < n; first += lanes) {
    const size_t count = static_cast<size_t>(std::min<uint64_t>(lanes, n - first));
    TransposeRows<Src>(p, first, count, lanes, c, col);
    V m = hn::Load(d, col);
    for (uint32_t k = 1; k < c; ++k) m = hn::Max(m, hn::Load(d, col + k * lanes));
    V rest = zero, ez = zero, ez2 = zero, ties = zero;
    for (uint32_t k = 0; k < c; ++k) {
      const V x = hn::Max(hn::Sub(hn::Load(d, col + k * lanes), m), min_gap);
      V arg = hn::Mul(x, beta_v);
      const auto below = hn::Lt(x, zero);
      ties = hn::Add(ties, hn::IfThenZeroElse(below, one));
      const auto keep = hn::And(below, hn::Ge(arg, min_arg));
      arg = hn::Max(arg, min_arg);
      const V e = hn::IfThenElseZero(keep, ExpNonPositive(d, arg));
      rest = hn::Add(rest, e);
      const V exz = hn::Mul(e, x);
      ez = hn::Add(ez, exz);
      ez2 = hn::MulAdd(exz, x, ez2);
    }
    StoreEach(d, res, m, ties, rest, ez, ez2);
    for (size_t r = 0; r < count; ++r) {
      TemperatureRowSums& t = out[first + r];
      t.max = res[0][r];
      t.ties = static_cast<uint32_t>(res[1][r]);
      t.rest = res[2][r];
      t.sum_ez = res[3][r];
      t.sum_ez2 = res[4][r];
    }
  }
}

template <class Src>
void TemperatureRowsT(const char* rows, uint64_t n, uint32_t c, double beta,
                      TemperatureRowSums* out) {
  if (c <= kNarrowClasses) return TemperatureNarrowRowsT<Src>(rows, n, c, beta, out);
  const auto* p = reinterpret_cast<const typename Src::Raw*>(rows);
  for (uint64_t r = 0; r < n; ++r, p += c) {
    TemperatureRowT<Src>(p, c, beta, r + 1 < n ? p + c : p, &out[r]);
  }
}

// The Platt terms of n logits against their 0/1 targets, elementwise: x = a z + b,
// e = exp(-|x|), loss = max(x, 0) - x y + log1p(e). Ignored targets and infinite logits
// add nothing; a padded tail carries ignored targets.
template <class Src>
void PlattSpanT(const char* logits, const int32_t* targets, uint64_t n, double a,
                double b, PlattDerivatives* out) {
  const hn::ScalableTag<double> d;
  const hn::Rebind<int32_t, decltype(d)> di;
  using V = hn::Vec<decltype(d)>;
  using Raw = typename Src::Raw;
  const auto* p = reinterpret_cast<const Raw*>(logits);
  const V a_v = hn::Set(d, a), b_v = hn::Set(d, b), zero = hn::Zero(d),
          one = hn::Set(d, 1.0), min_arg = hn::Set(d, kMinExpArg);
  V value = zero, ga = zero, gb = zero, haa = zero, hab = zero, hbb = zero;
  auto step = [&](V z, hn::Vec<decltype(di)> y32) HWY_ATTR {
    const V y = hn::PromoteTo(d, y32);  // 0, 1, or kIgnoredLabel
    const auto valid = hn::And(hn::Ge(y, zero), hn::IsFinite(z));
    z = hn::IfThenElseZero(valid, z);
    const V x = hn::MulAdd(a_v, z, b_v);
    const V neg_abs = hn::Neg(hn::Abs(x));
    const V e = hn::IfThenElseZero(hn::Ge(neg_abs, min_arg),
                                   ExpNonPositive(d, hn::Max(neg_abs, min_arg)));
    // sigmoid(x) and 1 - sigmoid(x) are 1 / (1 + e) and e / (1 + e), in the order of
    // x's sign: neither is taken from the other, so p - y and p (1 - p) = e / (1 + e)^2
    // keep their relative precision when p is close to 0 or 1.
    const V inv = hn::Div(one, hn::Add(one, e));
    const V small = hn::Mul(e, inv);
    const auto up = hn::Ge(x, zero);
    const auto positive = hn::Eq(y, one);
    const V prob = hn::IfThenElse(up, inv, small);
    const V complement = hn::IfThenElse(up, small, inv);
    // max(x, 0) - x y, written so that an infinite x with a matching target gives 0.
    const V margin =
        hn::IfThenElse(positive, hn::Max(hn::Neg(x), zero), hn::Max(x, zero));
    value = hn::Add(value, hn::IfThenElseZero(valid, hn::Add(margin, hn::Log1p(d, e))));
    const V residual =
        hn::IfThenElseZero(valid, hn::IfThenElse(positive, hn::Neg(complement), prob));
    const V w = hn::IfThenElseZero(valid, hn::Mul(small, inv));
    ga = hn::MulAdd(residual, z, ga);
    gb = hn::Add(gb, residual);
    const V wz = hn::Mul(w, z);
    haa = hn::MulAdd(wz, z, haa);
    hab = hn::Add(hab, wz);
    hbb = hn::Add(hbb, w);
  };
  const size_t lanes = hn::Lanes(d);
  uint64_t k = 0;
  for (; k + lanes <= n; k += lanes) {
    step(Src::LoadWide(d, p + k), hn::LoadU(di, targets + k));
  }
  if (k < n) {
    HWY_ALIGN Raw z_buf[HWY_MAX_BYTES / sizeof(float)] = {};
    HWY_ALIGN int32_t y_buf[HWY_MAX_BYTES / sizeof(float)];
    std::fill(y_buf, y_buf + lanes, kIgnoredLabel);
    std::memcpy(z_buf, p + k, (n - k) * sizeof(Raw));
    std::memcpy(y_buf, targets + k, (n - k) * sizeof(int32_t));
    step(Src::LoadWide(d, z_buf), hn::Load(di, y_buf));
  }
  out->value = hn::GetLane(hn::SumOfLanes(d, value));
  out->ga = hn::GetLane(hn::SumOfLanes(d, ga));
  out->gb = hn::GetLane(hn::SumOfLanes(d, gb));
  out->haa = hn::GetLane(hn::SumOfLanes(d, haa));
  out->hab = hn::GetLane(hn::SumOfLanes(d, hab));
  out->hbb = hn::GetLane(hn::SumOfLanes(d, hbb));
}

// The per-target entry points that row_simd.cc exports.
void SoftmaxRowsTarget(v1::DType dtype, const char* rows, uint64_t n, uint32_t c,
                       double scale, const int32_t* rank_labels, bool moment2,
                       SoftmaxRowStats* out) {
  switch (dtype) {
    case v1::DTYPE_FLOAT64:
      return SoftmaxRowsT<SrcF64>(rows, n, c, scale, rank_labels, moment2, out);
    case v1::DTYPE_FLOAT16:
      return SoftmaxRowsT<SrcF16>(rows, n, c, scale, rank_labels, moment2, out);
    case v1::DTYPE_BFLOAT16:
      return SoftmaxRowsT<SrcBF16>(rows, n, c, scale, rank_labels, moment2, out);
    default:
      return SoftmaxRowsT<SrcF32>(rows, n, c, scale, rank_labels, moment2, out);
  }
}

void TemperatureRowsTarget(v1::DType dtype, const char* rows, uint64_t n, uint32_t c,
                           double beta, TemperatureRowSums* out) {
  switch (dtype) {
    case v1::DTYPE_FLOAT64:
      return TemperatureRowsT<SrcF64>(rows, n, c, beta, out);
    case v1::DTYPE_FLOAT16:
      return TemperatureRowsT<SrcF16>(rows, n, c, beta, out);
    case v1::DTYPE_BFLOAT16:
      return TemperatureRowsT<SrcBF16>(rows, n, c, beta, out);
    default:
      return TemperatureRowsT<SrcF32>(rows, n, c, beta, out);
  }
}

void PlattSpanTarget(v1::DType dtype, const char* logits, const int32_t* targets,
                     uint64_t n, double a, double b, PlattDerivatives* out) {
  switch (dtype) {
    case v1::DTYPE_FLOAT64:
      return PlattSpanT<SrcF64>(logits, targets, n, a, b, out);
    case v1::DTYPE_FLOAT16:
      return PlattSpanT<SrcF16>(logits, targets, n, a, b, out);
    case v1::DTYPE_BFLOAT16:
      return PlattSpanT<SrcBF16>(logits, targets, n, a, b, out);
    default:
      return PlattSpanT<SrcF32>(logits, targets, n, a, b, out);
  }
}

// Calls step(in, out) with the arrays' pointers advanced a whole vector at a time over n
// doubles, then once with zero-padded copies of the last partial vector, whose results
// are copied back: step loads one vector at each `in` and stores one at each `out`.
template <size_t kIn, size_t kOut, class Step>
HWY_INLINE void ForEachDoubleVector(std::array<const double*, kIn> in,
                                    std::array<double*, kOut> out, uint64_t n,
                                    const Step& step) {
  const size_t lanes = hn::Lanes(hn::ScalableTag<double>());
  uint64_t k = 0;
  for (; k + lanes <= n; k += lanes) {
    std::array<const double*, kIn> at_in;
    std::array<double*, kOut> at_out;
    for (size_t i = 0; i < kIn; ++i) at_in[i] = in[i] + k;
    for (size_t i = 0; i < kOut; ++i) at_out[i] = out[i] + k;
    step(at_in, at_out);
  }
  if (k == n) return;
  HWY_ALIGN double buf[kIn + kOut][HWY_MAX_BYTES / sizeof(double)] = {};
  std::array<const double*, kIn> tail_in;
  std::array<double*, kOut> tail_out;
  for (size_t i = 0; i < kIn; ++i) {
    std::memcpy(buf[i], in[i] + k, (n - k) * sizeof(double));
    tail_in[i] = buf[i];
  }
  for (size_t i = 0; i < kOut; ++i) tail_out[i] = buf[kIn + i];
  step(tail_in, tail_out);
  for (size_t i = 0; i < kOut; ++i) {
    std::memcpy(out[i] + k, tail_out[i], (n - k) * sizeof(double));
  }
}

void SigmoidTermsTarget(const double* x, uint64_t n, SigmoidTerms* out) {
  const hn::ScalableTag<double> d;
  using V = hn::Vec<decltype(d)>;
  const V min_arg = hn::Set(d, kMinExpArg);
  const V one = hn::Set(d, 1.0);
  // Below kMinExpArg, e^-|x| = e^(40 - |x|) e^-40 keeps the subnormal sigmoid(x) of
  // x in (-745, -708] (a confidence, and distinct values must stay distinct for the
  // equal-mass bins); past -748 the clamp leaves a product that rounds to 0.
  const V shift = hn::Set(d, 40.0);
  const V exp_minus_shift = hn::Set(d, 4.248354255291589e-18);  // e^-40
  ForEachDoubleVector<1, 3>(
      {x}, {out->low, out->high, out->log1p_e}, n,
      [&](std::array<const double*, 1> in, std::array<double*, 3> to) HWY_ATTR {
        const V neg_abs = hn::Neg(hn::Abs(hn::LoadU(d, in[0])));
        const auto deep = hn::Lt(neg_abs, min_arg);
        const V arg =
            hn::Max(hn::IfThenElse(deep, hn::Add(neg_abs, shift), neg_abs), min_arg);
        V e = ExpNonPositive(d, arg);
        e = hn::IfThenElse(deep, hn::Mul(e, exp_minus_shift), e);
        // NaN: no comparison holds, so it takes e = 0 like an infinite x.
        e = hn::IfThenElseZero(hn::Or(hn::Ge(neg_abs, min_arg), deep), e);
        const V one_plus = hn::Add(one, e);
        hn::StoreU(hn::Div(e, one_plus), d, to[0]);
        hn::StoreU(hn::Div(one, one_plus), d, to[1]);
        hn::StoreU(hn::Log1p(d, e), d, to[2]);
      });
}

void SoftmaxFinishTarget(const double* rest, const double* gap, uint64_t n,
                         double* log_sum, double* e_gap) {
  const hn::ScalableTag<double> d;
  const auto min_arg = hn::Set(d, kMinExpArg);
  ForEachDoubleVector<2, 2>(
      {rest, gap}, {log_sum, e_gap}, n,
      [&](std::array<const double*, 2> in, std::array<double*, 2> to) HWY_ATTR {
        const auto g = hn::LoadU(d, in[1]);
        hn::StoreU(hn::Log1p(d, hn::LoadU(d, in[0])), d, to[0]);
        hn::StoreU(hn::IfThenElseZero(hn::Ge(g, min_arg),
                                      ExpNonPositive(d, hn::Max(g, min_arg))),
                   d, to[1]);
      });
}

const char* TargetNameT() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace calib
HWY_AFTER_NAMESPACE();

#endif  // CALIB_SRC_ROW_SIMD_INL_H_
