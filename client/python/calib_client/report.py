"""Typed views of the server's answers: one frozen dataclass per proto message.

Each dataclass has exactly the fields of its message, under the same names, and is
built generically from the message (so a field added to the proto but not here fails
loudly at the first conversion). Scalars become Python ints, floats, bools and strings;
proto3 `optional` scalars and sub-messages that the server did not set are None.
to_dict() gives the protobuf JSON mapping with preserve_proto_field_names (as
`calib eval --json` prints it), except that numbers stay numbers: 64-bit integers are
ints rather than strings, and unset fields are absent.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any, List, Optional

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


class _ProtoView:
    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, _ProtoView):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class ReliabilityBin(_ProtoView):
    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float
    accuracy_lower: float
    accuracy_upper: float


@dataclass(frozen=True, kw_only=True)
class TopKAccuracy(_ProtoView):
    k: int
    accuracy: float


@dataclass(frozen=True, kw_only=True)
class Metrics(_ProtoView):
    num_samples: int
    accuracy: float
    nll: float
    brier: float
    ece: float
    mce: float
    rms_ce: float
    ece_equal_mass: float
    classwise_ece: Optional[float]
    mean_confidence: float
    mean_entropy: float
    top_k: List[TopKAccuracy]
    reliability_bins: List[ReliabilityBin]
    equal_mass_bins: List[ReliabilityBin]
    debiased_rms_ce: float
    smooth_ece: Optional[float]


@dataclass(frozen=True, kw_only=True)
class TemperatureScaling(_ProtoView):
    temperature: float
    calibrated: Metrics
    iterations: int
    converged: bool
    fit_samples: int


@dataclass(frozen=True, kw_only=True)
class PlattScaling(_ProtoView):
    slope: float
    intercept: float
    calibrated: Metrics
    iterations: int
    converged: bool


@dataclass(frozen=True, kw_only=True)
class Interval(_ProtoView):
    lower: float
    upper: float


@dataclass(frozen=True, kw_only=True)
class BootstrapIntervals(_ProtoView):
    level: float
    samples: int
    ece: Interval
    nll: Interval
    accuracy: Interval
    brier: Interval


@dataclass(frozen=True, kw_only=True)
class Report(_ProtoView):
    metrics: Metrics
    temperature_scaling: Optional[TemperatureScaling]  # when fit_temperature
    platt_scaling: Optional[PlattScaling]              # when fit_temperature and SIGMOID
    intervals: Optional[BootstrapIntervals]            # when bootstrap_samples > 0
    num_ignored: int
    warnings: List[str]


@dataclass(frozen=True, kw_only=True)
class ServerInfo(_ProtoView):
    """The server's version and limits (GetServerInfoResponse); 0 means no limit."""

    version: str
    max_message_bytes: int
    max_rows: int
    max_classes: int
    memory_budget_bytes: int
    fit_store_bytes: int
    max_concurrent_evaluations: int


_VIEWS = {cls.__name__: cls for cls in (ReliabilityBin, TopKAccuracy, Metrics,
                                        TemperatureScaling, PlattScaling, Interval,
                                        BootstrapIntervals, Report)}
_VIEWS["GetServerInfoResponse"] = ServerInfo


def from_proto(message: Message) -> Any:
    """The dataclass of `message`'s type, holding its fields."""
    values = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.label == FieldDescriptor.LABEL_REPEATED:
            values[field.name] = [from_proto(v) if field.message_type else v for v in value]
        elif field.message_type is not None or field.containing_oneof is not None:
            values[field.name] = (
                (from_proto(value) if field.message_type else value)
                if message.HasField(field.name) else None)
        else:
            values[field.name] = value
    return _VIEWS[message.DESCRIPTOR.name](**values)
