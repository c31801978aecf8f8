#!/usr/bin/env python3
"""Writes the seed corpus of evaluate_request_fuzzer: valid requests of every mode,
dtype and option, and a few of each kind of bad one, in the fuzzer's input format
(byte 0 even: one EvaluateRequest; odd: length-delimited EvaluateStreamRequests).

  PYTHONPATH=build/python /usr/bin/python3 tests/fuzz/make_corpus.py tests/fuzz/corpus

Deterministic (fixed seeds), so rerunning it leaves the committed corpus unchanged.
Inputs the fuzzer found (found_*: a crash or a slow call, once fixed) sit beside these
as regression cases; this script leaves them alone.
"""

import pathlib
import sys

import numpy as np
from google.protobuf.internal.encoder import _VarintBytes

from calib_client.stubs import calibration_pb2 as pb

UNARY, STREAM = b"\x00", b"\x01"


def tensor(array, dtype):
    return pb.Tensor(dtype=dtype, data=np.ascontiguousarray(array).tobytes())


def batch(logits, labels, logits_dtype=pb.DTYPE_FLOAT32, labels_dtype=pb.DTYPE_INT64):
    return pb.Batch(logits=tensor(logits, logits_dtype), labels=tensor(labels, labels_dtype))


def softmax_rows(rng, rows, classes, dtype=np.float32):
    return (rng.normal(size=(rows, classes)) * 2).astype(dtype), rng.integers(
        0, classes, size=rows).astype(np.int64)


def stream(config, *batches, raw_tail=b""):
    messages = [pb.EvaluateStreamRequest(config=config)] if config is not None else []
    messages += [pb.EvaluateStreamRequest(batch=b) for b in batches]
    out = STREAM
    for message in messages:
        body = message.SerializeToString()
        out += _VarintBytes(len(body)) + body
    return out + raw_tail


def unary(config, b):
    request = pb.EvaluateRequest(batch=b)
    if config is not None:
        request.config.CopyFrom(config)
    return UNARY + request.SerializeToString()


def cases():
    rng = np.random.default_rng(20261129)
    z, y = softmax_rows(rng, 12, 4)
    full = pb.EvaluationConfig(num_classes=4, num_bins=10, top_k=[1, 3], classwise=True,
                               fit_temperature=True, bootstrap_samples=20,
                               confidence_level=0.9, seed=7, smooth_ece=True,
                               bin_edges=pb.BIN_EDGES_LEFT_CLOSED)
    yield "evaluate_softmax", unary(pb.EvaluationConfig(num_classes=4), batch(z, y))
    yield "evaluate_full_options", unary(full, batch(z, y))
    yield "evaluate_missing_config", unary(None, batch(z, y))
    yield "stream_softmax_batches", stream(full, batch(z[:5], y[:5]), batch(z[5:5], y[5:5]),
                                           batch(z[5:], y[5:]))
    yield "stream_softmax_float64_int32", stream(
        pb.EvaluationConfig(num_classes=4, top_k=[2]),
        batch(z[:6].astype(np.float64), y[:6].astype(np.int32), pb.DTYPE_FLOAT64,
              pb.DTYPE_INT32),
        batch(z[6:].astype(np.float64), y[6:].astype(np.int32), pb.DTYPE_FLOAT64,
              pb.DTYPE_INT32))
    yield "stream_float16_uint8", stream(
        pb.EvaluationConfig(num_classes=4, fit_temperature=True),
        batch(z.astype(np.float16), y.astype(np.uint8), pb.DTYPE_FLOAT16, pb.DTYPE_UINT8))
    bf16 = (z.view(np.uint32) >> 16).astype(np.uint16)
    yield "stream_bfloat16", stream(pb.EvaluationConfig(num_classes=4),
                                    batch(bf16, y, pb.DTYPE_BFLOAT16))
    p = np.exp(z.astype(np.float64))
    p /= p.sum(axis=1, keepdims=True)
    yield "stream_probabilities", stream(
        pb.EvaluationConfig(num_classes=4, input_kind=pb.INPUT_KIND_PROBABILITIES),
        batch(p, y, pb.DTYPE_FLOAT64))
    with np.errstate(divide="ignore"):
        logp = np.log(np.where(np.arange(4) == 0, 0.0, p))  # -inf where p = 0
    yield "stream_log_probabilities", stream(
        pb.EvaluationConfig(num_classes=4, input_kind=pb.INPUT_KIND_LOG_PROBABILITIES),
        batch(logp.astype(np.float32), y))
    ignored = y.copy()
    ignored[::3] = -100
    yield "stream_ignore_index", stream(
        pb.EvaluationConfig(num_classes=4, ignore_index=-100, classwise=True),
        batch(z, ignored))
    zb = rng.normal(size=(16, 1)).astype(np.float32)
    yb = rng.integers(0, 2, size=16).astype(np.int64)
    yield "stream_binary_sigmoid", stream(
        pb.EvaluationConfig(num_classes=1, activation=pb.ACTIVATION_SIGMOID,
                            fit_temperature=True, bootstrap_samples=10,
                            binary_reliability=pb.BINARY_RELIABILITY_TOP_LABEL),
        batch(zb[:7], yb[:7]), batch(zb[7:], yb[7:]))
    zm = rng.normal(size=(8, 3)).astype(np.float32)
    ym = rng.integers(0, 2, size=(8, 3)).astype(np.uint8)
    yield "stream_multilabel", stream(
        pb.EvaluationConfig(num_classes=3, activation=pb.ACTIVATION_SIGMOID,
                            fit_temperature=True, classwise=True, smooth_ece=True),
        batch(zm, ym, labels_dtype=pb.DTYPE_UINT8))
    # Bad ones: each refused with the code of its row of api.md's table.
    yield "stream_batch_first", stream(None, batch(z, y))
    yield "stream_second_config", stream(full, batch(z, y)) + stream(full)[1:]
    yield "stream_config_only", stream(full)
    nan = z.copy()
    nan[3, 2] = np.nan
    yield "stream_nan_logit", stream(pb.EvaluationConfig(num_classes=4), batch(nan, y))
    bad_label = y.copy()
    bad_label[5] = 9
    yield "stream_label_out_of_range", stream(pb.EvaluationConfig(num_classes=4),
                                              batch(z, bad_label))
    yield "stream_partial_row", stream(pb.EvaluationConfig(num_classes=4),
                                       pb.Batch(logits=tensor(z.ravel()[:7], 1)))
    yield "stream_dtype_change", stream(
        pb.EvaluationConfig(num_classes=4), batch(z[:4], y[:4]),
        batch(z[4:].astype(np.float64), y[4:], pb.DTYPE_FLOAT64))
    yield "stream_huge_num_classes", stream(
        pb.EvaluationConfig(num_classes=2**31 - 1, classwise=True), batch(z, y))
    yield "stream_huge_num_bins", stream(pb.EvaluationConfig(num_classes=4,
                                                             num_bins=2**32 - 1))
    yield "stream_huge_top_k", stream(pb.EvaluationConfig(num_classes=4, top_k=[2**32 - 1]))
    yield "stream_huge_bootstrap", stream(
        pb.EvaluationConfig(num_classes=4, bootstrap_samples=2**32 - 1), batch(z, y))
    yield "stream_unknown_enums", stream(
        pb.EvaluationConfig(num_classes=4, activation=9, input_kind=9, bin_edges=9))
    yield "stream_truncated", stream(full, batch(z, y))[:-9]
    yield "stream_huge_declared_length", stream(full) + _VarintBytes(2**31) + b"\x12\x00"


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, data in cases():
        (out / name).write_bytes(data)


if __name__ == "__main__":
    main()
