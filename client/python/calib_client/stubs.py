"""The generated protobuf and gRPC modules, which the build puts in calib_client/_gen/."""

try:
    from ._gen import calibration_pb2, calibration_pb2_grpc
except ImportError as error:
    raise ImportError(
        "calib_client's generated stubs (calib_client/_gen) are missing: build the "
        "project (ninja -C build) and import calib_client from build/python "
        "(PYTHONPATH=build/python), not from the source tree") from error

__all__ = ["calibration_pb2", "calibration_pb2_grpc"]
