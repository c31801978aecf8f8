#!/usr/bin/python3
"""Fits the polynomials of src/row_simd-inl.h's ExpNonPositive: e^r = 1 + r + r^2 P(r)
on |r| <= ln(2) / (2 * table entries), minimising the largest relative error (Lawson's
iteratively reweighted least squares, in 40-digit arithmetic with mpmath). Prints the
coefficients c2.. of P, highest last, and the error bound before rounding them to double.

  /usr/bin/python3 bench/fit_exp_polynomial.py                # portable: 2 entries, degree 7
  /usr/bin/python3 bench/fit_exp_polynomial.py --table 16 --degree 5   # AVX-512
"""
import argparse

import mpmath as mp

NODES = 600
ITERATIONS = 60


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=int, default=2, help="entries of the 2^(j/n) table")
    parser.add_argument("--degree", type=int, default=7, help="of the whole polynomial")
    args = parser.parse_args()
    mp.mp.dps = 40
    half_width = mp.log(2) / (2 * args.table)
    nodes = [half_width * mp.cos(mp.pi * (i + mp.mpf(0.5)) / NODES) for i in range(NODES)]
    nodes += [half_width, -half_width]
    count = args.degree - 1
    weights = [mp.mpf(1)] * len(nodes)
    for _ in range(ITERATIONS):
        a = mp.matrix(len(nodes), count)
        b = mp.matrix(len(nodes), 1)
        for i, r in enumerate(nodes):
            scale = mp.sqrt(weights[i]) / mp.exp(r)  # relative, not absolute, error
            for k in range(count):
                a[i, k] = scale * r ** (k + 2)
            b[i] = scale * (mp.exp(r) - 1 - r)
        coeffs = mp.lu_solve(a.T * a, a.T * b)
        errors = [abs((1 + r + sum(coeffs[k] * r ** (k + 2) for k in range(count)) -
                       mp.exp(r)) / mp.exp(r)) for r in nodes]
        total = sum(w * e for w, e in zip(weights, errors))
        weights = [max(w * e / total, mp.mpf(10) ** -30) for w, e in zip(weights, errors)]
    print("largest relative error:", mp.nstr(max(errors), 5))
    for k in range(count):
        print(f"c{k + 2} = {float(coeffs[k])!r}")


if __name__ == "__main__":
    main()
