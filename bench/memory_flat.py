#!/usr/bin/python3
"""calibd's resident memory while it streams an evaluation without a fit: 1 GB, then 8 GB
(and whatever --sizes asks), each on a fresh calibd. The client repeats one prebuilt batch
message from a generator, so nothing is written to disk and the client stays small.
calibd's VmRSS is sampled every 50 ms from /proc; prints a Markdown table.

  /usr/bin/python3 bench/memory_flat.py [--build build] [--sizes 1,8] [--classes 1000]
      [--chunk-bytes 4194304] [--threads 2] [--calibd PATH]
"""

import argparse
import os
import sys
import threading
import time

import numpy as np

import bench_util as bu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=bu.default_build_dir())
    parser.add_argument("--sizes", default="1,8", help="GB of logits and labels")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--chunk-bytes", type=int, default=4 << 20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibd", help="this calibd instead of the build's")
    args = parser.parse_args()
    calibd = args.calibd or os.path.join(args.build, "calibd")
    sys.path.insert(0, os.path.join(args.build, "python"))
    import grpc
    from calib_client.stubs import calibration_pb2 as pb
    from calib_client.stubs import calibration_pb2_grpc as pb_grpc

    row_bytes = args.classes * 4 + 8
    rows_per_batch = args.chunk_bytes // row_bytes
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((rows_per_batch, args.classes), dtype=np.float32) * 3)
    labels = rng.integers(0, args.classes, rows_per_batch, dtype=np.int64)
    batch = pb.EvaluateStreamRequest(batch=pb.Batch(
        logits=pb.Tensor(dtype=pb.DTYPE_FLOAT32, data=logits.tobytes()),
        labels=pb.Tensor(dtype=pb.DTYPE_INT64, data=labels.tobytes())))
    config = pb.EvaluateStreamRequest(config=pb.EvaluationConfig(num_classes=args.classes))

    table = []
    for gigabytes in (float(s) for s in args.sizes.split(",")):
        batches = int(gigabytes * 1e9 // (rows_per_batch * row_bytes))
        with bu.Server([calibd, "--threads",
                        str(args.threads)]) as server:
            channel = grpc.insecure_channel(server.address)
            stub = pb_grpc.CalibrationServiceStub(channel)
            stub.GetServerInfo(pb.GetServerInfoRequest())
            idle = bu.memory_kib(server.pid)["VmRSS"]
            samples = []
            sent = [0]
            stop = threading.Event()

            def sample():
                while not stop.wait(0.05):
                    samples.append((sent[0], bu.memory_kib(server.pid)["VmRSS"]))

            def requests():
                yield config
                for i in range(batches):
                    sent[0] = i
                    yield batch

            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.perf_counter()
            response = stub.EvaluateStream(requests())
            seconds = time.perf_counter() - start
            stop.set()
            sampler.join()
            assert response.report.metrics.num_samples == batches * rows_per_batch
            after = bu.memory_kib(server.pid)
            channel.close()
            # The largest RSS in each quarter of the stream: flat means equal.
            quarters = [max((rss for i, rss in samples if q * batches <= 4 * i <
                             (q + 1) * batches), default=0) for q in range(4)]
            table.append([f"{batches * rows_per_batch * row_bytes / 1e9:.1f} GB",
                          f"{batches:,}", f"{idle / 1024:.0f}",
                          " / ".join(f"{q / 1024:.0f}" for q in quarters),
                          f"{after['VmRSS'] / 1024:.0f}", f"{after['VmHWM'] / 1024:.0f}",
                          f"{batches * rows_per_batch * row_bytes / seconds / 1e9:.2f}"])
            print(table[-1], flush=True)

    print(f"\ncalibd --threads {args.threads}, {args.classes} float32 logits + int64 label "
          f"per row, {args.chunk_bytes >> 10} KiB messages from the Python stubs, no fit; "
          f"MiB.\n{bu.machine()}\n")
    print(bu.markdown_table(
        ["streamed", "messages", "RSS idle", "max RSS per quarter of the stream",
         "RSS after", "VmHWM", "GB/s"], table))


if __name__ == "__main__":
    main()
