# syntax=docker/dockerfile:1
# calibd in a container: built on debian:bookworm, run on debian:bookworm-slim with only
# the shared libraries' packages, as the numeric non-root user 65532.
# Both stages take their Debian packages from scripts/packages.txt (sections [build] and
# [runtime], printed by scripts/packages.sh); tests/runtime_packages_test.py checks that
# [runtime] covers every library the built binaries load, tests/deploy_test.py that this
# file names no package itself.
#   docker build -t calibd:0.1.0 .
#   docker run --rm -p 50051:50051 calibd:0.1.0
# calibd drains for --grace-seconds (20) on SIGTERM: stop it with `docker stop -t 30`.

FROM debian:bookworm AS build
RUN --mount=type=bind,source=scripts,target=/tmp/scripts \
    apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       $(sh /tmp/scripts/packages.sh build) \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCALIB_BUILD_TESTS=OFF -DCALIB_BUILD_BENCH=OFF \
    && cmake --build /build --target calibd calib

FROM debian:bookworm-slim
RUN --mount=type=bind,source=scripts,target=/tmp/scripts \
    apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       $(sh /tmp/scripts/packages.sh runtime) \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/calibd /build/calib /usr/local/bin/
USER 65532:65532
# 50051: gRPC (calib.v1.CalibrationService, grpc.health.v1, reflection).
# 9090: Prometheus /metrics (--metrics-listen).
EXPOSE 50051 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["calib", "health", "--server", "127.0.0.1:50051"]
ENTRYPOINT ["calibd", "--listen", "0.0.0.0:50051"]
CMD ["--metrics-listen", "0.0.0.0:9090", "--grace-seconds", "20"]
