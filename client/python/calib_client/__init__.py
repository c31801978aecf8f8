"""calib_client: calibration metrics of a model's predictions, from a calibd server.

    import calib_client
    report = calib_client.evaluate(logits, labels, server="localhost:50051",
                                   fit_temperature=True)
    print(report.metrics.ece, report.temperature_scaling.temperature)

logits and labels are NumPy arrays or PyTorch tensors; the options are the fields of
calib.v1.EvaluationConfig (OPTIONS). See client/python/README.md.
"""

from .client import DEFAULT_CHUNK_BYTES, Client, evaluate
from .config import OPTIONS
from .errors import CalibError
from .report import (BootstrapIntervals, Interval, Metrics, PlattScaling, ReliabilityBin,
                     Report, ServerInfo, TemperatureScaling, TopKAccuracy)

__all__ = ["BootstrapIntervals", "CalibError", "Client", "DEFAULT_CHUNK_BYTES", "Interval",
           "Metrics", "OPTIONS", "PlattScaling", "ReliabilityBin", "Report", "ServerInfo",
           "TemperatureScaling", "TopKAccuracy", "evaluate"]
