// The per-target half of row_simd.h: row_simd.cc includes it once per Highway target
// through hwy/foreach_target.h, hence the toggled include guard. Stateless functions.
#if defined(CALIB_SRC_ROW_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef CALIB_SRC_ROW_SIMD_INL_H_
#undef CALIB_SRC_ROW_SIMD_INL_H_
#else
#define CALIB_SRC_ROW_SIMD_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
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

struct SrcF16 {
  using Raw = hwy::float16_t;
  using Lane = float;
  template <class D>
  static HWY_INLINE hn::Vec<D> Load(D d, const Raw* p) {
    const hn::Rebind<hwy::float16_t, D> dh;
    return hn::PromoteTo(d, hn::LoadU(dh, p));
  }
  template <class DD>
  static HWY_INLINE hn::Vec<DD> LoadWide(DD dd, const Raw* p) {
    return hn::PromoteTo(dd, Load(hn::Rebind<float, DD>(), p));
  }
  static float Scalar(const Raw* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof(h));
    return HalfToFloat(h);
  }
};

struct SrcBF16 {
  using Raw = hwy::bfloat16_t;
  using Lane = float;
  template <class D>
  static HWY_INLINE hn::Vec<D> Load(D d, const Raw* p) {
    const hn::Rebind<hwy::bfloat16_t, D> dh;
    return hn::PromoteTo(d, hn::LoadU(dh, p));
  }
  template <class DD>
  static HWY_INLINE hn::Vec<DD> LoadWide(DD dd, const Raw* p) {
    return hn::PromoteTo(dd, Load(hn::Rebind<float, DD>(), p));
  }
  static float Scalar(const Raw* p) {
    uint16_t h;
    std::memcpy(&h, p, sizeof(h));
    return BFloat16ToFloat(h);
  }
};

// The most negative argument ExpNonPositive takes: 2^q stays a normal number.
template <typename T>
constexpr T kMinExpArg = sizeof(T) == 4 ? T(-87) : T(-708);
// A row whose scaled range stays within this needs no lower bound on the argument.
template <typename T>
constexpr double kUnboundedRange = sizeof(T) == 4 ? 80.0 : 700.0;

// exp(x) for x in [kMinExpArg, 0], with Highway's reduction and polynomial (the accuracy
// of hn::Exp) but cheaper around them: rounding to the nearest multiple of ln 2 by the
// 1.5 * 2^mantissa trick leaves q in the low bits, which then become the exponent of 2^q
// directly, without the float<->int conversions, their overflow fix-ups, or the
// two-step 2^q that hn::Exp needs for its wider range.
template <class D, class V>
HWY_INLINE V ExpNonPositive(D d, V x) {
  using T = hn::TFromD<D>;
  using TU = hwy::MakeUnsigned<T>;
  const hn::RebindToUnsigned<D> du;
  constexpr bool kFloat = sizeof(T) == 4;
  constexpr T kMagic = kFloat ? T(12582912.0) : T(6755399441055744.0);  // 1.5 * 2^mant
  constexpr TU kMagicBits =
      static_cast<TU>(kFloat ? 0x4B400000ull : 0x4338000000000000ull);
  constexpr TU kBias = kFloat ? TU{127} : TU{1023};
  constexpr int kMantissaBits = kFloat ? 23 : 52;
  const V magic = hn::Set(d, kMagic);
  const V t = hn::MulAdd(x, hn::Set(d, T(1.442695040888963407359924681)), magic);
  const V qf = hn::Sub(t, magic);
  // -ln 2 in two parts, as in hn::Exp.
  V r = hn::MulAdd(
      qf, hn::Set(d, kFloat ? T(-0.693145751953125) : T(-0.6931471805596629565116018)),
      x);
  r = hn::MulAdd(qf,
                 hn::Set(d, kFloat ? T(-1.428606765330187045e-6)
                                   : T(-0.28235290563031577122588448175e-12)),
                 r);
  hn::impl::ExpImpl<T> impl;
  const V p = hn::Add(impl.ExpPoly(d, r), hn::Set(d, T(1)));
  // t's bits are kMagicBits + q: shifting (q + bias) into the exponent field makes 2^q.
  const auto exponent = hn::ShiftLeft<kMantissaBits>(
      hn::Add(hn::BitCast(du, t), hn::Set(du, static_cast<TU>(kBias - kMagicBits))));
  return hn::Mul(p, hn::BitCast(d, exponent));
}

// Sums of float lanes are carried in double lanes: Add adds a float vector of partial
// sums, promoted; for double lanes it is a plain vector sum.
template <class D>
class WideSum {
 public:
  using T = hn::TFromD<D>;
  WideSum() : lo_(hn::Zero(dw_)), hi_(hn::Zero(dw_)) {}
  void Add(D d, hn::Vec<D> v) {
    (void)d;
    if constexpr (sizeof(T) == 4) {
#if HWY_TARGET == HWY_SCALAR
      lo_ = hn::Add(lo_, hn::PromoteTo(dw_, v));
#else
      const hn::Half<D> dh;
      lo_ = hn::Add(lo_, hn::PromoteTo(dw_, hn::LowerHalf(dh, v)));
      hi_ = hn::Add(hi_, hn::PromoteTo(dw_, hn::UpperHalf(dh, v)));
#endif
    } else {
      lo_ = hn::Add(lo_, v);
    }
  }
  double Total() const {
    if constexpr (sizeof(T) == 4) {
      return hn::GetLane(hn::SumOfLanes(dw_, hn::Add(lo_, hi_)));
    } else {
      return hn::GetLane(hn::SumOfLanes(dw_, lo_));
    }
  }

 private:
  using DW = std::conditional_t<
      sizeof(T) == 4,
      std::conditional_t<HWY_TARGET == HWY_SCALAR, hn::Rebind<double, D>,
                         hn::Rebind<double, hn::Half<D>>>,
      D>;
  DW dw_;
  hn::Vec<DW> lo_;
  hn::Vec<DW> hi_;
};

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
// dropped (their e is below 1e-37 of the sum) and clamped; kScaled: scale != 1.
template <class Src, bool kBounded, bool kScaled, bool kRank>
HWY_NOINLINE void SoftmaxPass(const typename Src::Raw* p, uint32_t c,
                              typename Src::Lane m, double scale,
                              typename Src::Lane z_label, SoftmaxRowStats* out) {
  using T = double;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const V mv = hn::Set(d, m);
  const V zero = hn::Zero(d);
  const V min_arg = hn::Set(d, kMinExpArg<T>);
  // scale in two parts, so that float lanes keep its double precision.
  const V scale_hi = hn::Set(d, static_cast<T>(scale));
  const V scale_lo = hn::Set(d, static_cast<T>(scale - static_cast<T>(scale)));
  const V zl = hn::Set(d, z_label);
  WideSum<decltype(d)> rest, rest_sq, sum_ed;
  V sq = zero, ed = zero;  // float partial sums, folded into the wide ones now and then
  bool bad = false;
  uint32_t ties = 0, argmax = 0, above = 0, level = 0;

  // e for one vector, excluding the lanes equal to m (counted in `ties`).
  auto step = [&](V v, size_t k, auto valid, bool tail) HWY_ATTR {
    const V x = hn::Sub(v, mv);
    V arg = x;
    if constexpr (kScaled) arg = hn::MulAdd(x, scale_lo, hn::Mul(x, scale_hi));
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
    return e;
  };

  const size_t n = hn::Lanes(d);
  const auto all = hn::FirstN(d, n);
  size_t k = 0;
  // Groups of 4 vectors; float partial sums are folded into double lanes every group
  // (the exp sum) or every 4 groups (the squares and e * arg), which bounds their
  // rounding to a few float ulps without paying a promotion per vector.
  while (k + 4 * n <= c) {
    for (int g = 0; g < 4 && k + 4 * n <= c; ++g, k += 4 * n) {
      const V e0 = step(Src::LoadWide(d, p + k), k, all, false);
      const V e1 = step(Src::LoadWide(d, p + k + n), k + n, all, false);
      const V e2 = step(Src::LoadWide(d, p + k + 2 * n), k + 2 * n, all, false);
      const V e3 = step(Src::LoadWide(d, p + k + 3 * n), k + 3 * n, all, false);
      rest.Add(d, hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
    }
    rest_sq.Add(d, sq);
    sum_ed.Add(d, ed);
    sq = zero;
    ed = zero;
  }
  ForEachVector<Src>(d, p + k, c - static_cast<uint32_t>(k),
                     [&](V v, size_t j, auto valid, bool tail)
                         HWY_ATTR { rest.Add(d, step(v, k + j, valid, tail)); });
  rest_sq.Add(d, sq);
  sum_ed.Add(d, ed);
  out->finite = !bad;
  out->argmax = argmax;
  out->ties = ties;
  out->rest = rest.Total();
  out->rest_sq = rest_sq.Total();
  out->sum_ed = sum_ed.Total();
  out->above = above;
  out->level = level;
}

template <class Src, bool kBounded, bool kScaled>
void SoftmaxPassRank(const typename Src::Raw* p, uint32_t c, typename Src::Lane m,
                     double scale, int32_t label, SoftmaxRowStats* out) {
  if (label >= 0) {
    SoftmaxPass<Src, kBounded, kScaled, true>(p, c, m, scale, Src::Scalar(p + label),
                                              out);
  } else {
    SoftmaxPass<Src, kBounded, kScaled, false>(p, c, m, scale, 0, out);
  }
}

template <class Src>
void SoftmaxRowT(const char* row, uint32_t c, double scale, int32_t label,
                 SoftmaxRowStats* out) {
  using T = typename Src::Lane;
  const hn::ScalableTag<T> d;
  const auto* p = reinterpret_cast<const typename Src::Raw*>(row);
  T m, mn;
  MaxMin<Src>(d, p, c, &m, &mn);
  out->max = m;
  out->min = mn;
  if (!std::isfinite(m) || !std::isfinite(mn)) {
    out->finite = false;
    return;
  }
  const bool bounded = (static_cast<double>(m) - mn) * scale > kUnboundedRange<double>;
  if (scale == 1) {
    bounded ? SoftmaxPassRank<Src, true, false>(p, c, m, scale, label, out)
            : SoftmaxPassRank<Src, false, false>(p, c, m, scale, label, out);
  } else {
    bounded ? SoftmaxPassRank<Src, true, true>(p, c, m, scale, label, out)
            : SoftmaxPassRank<Src, false, true>(p, c, m, scale, label, out);
  }
}

// The temperature pass: e = exp(beta z'), z' = z - m; sums of e, e z', e z'^2.
template <class Src, bool kBounded>
HWY_NOINLINE void TemperaturePass(const typename Src::Raw* p, uint32_t c,
                                  typename Src::Lane m, double beta,
                                  TemperatureRowSums* out) {
  using T = double;
  const hn::ScalableTag<T> d;
  using V = hn::Vec<decltype(d)>;
  const V mv = hn::Set(d, m);
  const V zero = hn::Zero(d);
  const V min_arg = hn::Set(d, kMinExpArg<T>);
  // Where e > 0, |z'| <= 708 / beta <= 7.08e14: clamping below that keeps z'^2 finite
  // without changing any term.
  const V min_gap = hn::Set(d, T(-1e15));
  const V beta_hi = hn::Set(d, static_cast<T>(beta));
  const V beta_lo = hn::Set(d, static_cast<T>(beta - static_cast<T>(beta)));
  WideSum<decltype(d)> rest, sum_ez, sum_ez2;
  V ez = zero, ez2 = zero;
  uint32_t ties = 0;

  auto step = [&](V v, auto valid, bool tail) HWY_ATTR {
    V x = hn::Sub(v, mv);
    if constexpr (kBounded) x = hn::Max(x, min_gap);
    V arg = hn::MulAdd(x, beta_lo, hn::Mul(x, beta_hi));
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
  while (k + 4 * n <= c) {
    for (int g = 0; g < 4 && k + 4 * n <= c; ++g, k += 4 * n) {
      const V e0 = step(Src::LoadWide(d, p + k), all, false);
      const V e1 = step(Src::LoadWide(d, p + k + n), all, false);
      const V e2 = step(Src::LoadWide(d, p + k + 2 * n), all, false);
      const V e3 = step(Src::LoadWide(d, p + k + 3 * n), all, false);
      rest.Add(d, hn::Add(hn::Add(e0, e1), hn::Add(e2, e3)));
    }
    sum_ez.Add(d, ez);
    sum_ez2.Add(d, ez2);
    ez = zero;
    ez2 = zero;
  }
  ForEachVector<Src>(d, p + k, c - static_cast<uint32_t>(k),
                     [&](V v, size_t, auto valid, bool tail)
                         HWY_ATTR { rest.Add(d, step(v, valid, tail)); });
  sum_ez.Add(d, ez);
  sum_ez2.Add(d, ez2);
  out->ties = ties;
  out->rest = rest.Total();
  out->sum_ez = sum_ez.Total();
  out->sum_ez2 = sum_ez2.Total();
}

template <class Src>
void TemperatureRowT(const char* row, uint32_t c, double beta, TemperatureRowSums* out) {
  using T = typename Src::Lane;
  const hn::ScalableTag<T> d;
  const auto* p = reinterpret_cast<const typename Src::Raw*>(row);
  T m, mn;
  MaxMin<Src>(d, p, c, &m, &mn);
  out->max = m;
  if ((static_cast<double>(m) - mn) * beta > kUnboundedRange<double>) {
    TemperaturePass<Src, true>(p, c, m, beta, out);
  } else {
    TemperaturePass<Src, false>(p, c, m, beta, out);
  }
}

// The per-target entry points that row_simd.cc exports.
void SoftmaxRowTarget(v1::DType dtype, const char* row, uint32_t c, double scale,
                      int32_t label, SoftmaxRowStats* out) {
  switch (dtype) {
    case v1::DTYPE_FLOAT64:
      return SoftmaxRowT<SrcF64>(row, c, scale, label, out);
    case v1::DTYPE_FLOAT16:
      return SoftmaxRowT<SrcF16>(row, c, scale, label, out);
    case v1::DTYPE_BFLOAT16:
      return SoftmaxRowT<SrcBF16>(row, c, scale, label, out);
    default:
      return SoftmaxRowT<SrcF32>(row, c, scale, label, out);
  }
}

void TemperatureRowTarget(v1::DType dtype, const char* row, uint32_t c, double beta,
                          TemperatureRowSums* out) {
  switch (dtype) {
    case v1::DTYPE_FLOAT64:
      return TemperatureRowT<SrcF64>(row, c, beta, out);
    case v1::DTYPE_FLOAT16:
      return TemperatureRowT<SrcF16>(row, c, beta, out);
    case v1::DTYPE_BFLOAT16:
      return TemperatureRowT<SrcBF16>(row, c, beta, out);
    default:
      return TemperatureRowT<SrcF32>(row, c, beta, out);
  }
}

const char* TargetNameT() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace calib
HWY_AFTER_NAMESPACE();

#endif  // CALIB_SRC_ROW_SIMD_INL_H_
