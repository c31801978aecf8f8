"""Keyword options -> calib.v1.EvaluationConfig.

The options are the EvaluationConfig fields themselves (num_classes and expected_rows
aside: they come from the logits' shape), read from the proto's descriptor so that they
cannot drift from it. Enums take the lower-case tail of their value names:
activation="sigmoid" is ACTIVATION_SIGMOID, bin_edges="left_closed" is
BIN_EDGES_LEFT_CLOSED. None leaves a field at its default (for ignore_index: no label is
ignored).
"""

from typing import Any, Mapping

from google.protobuf.descriptor import FieldDescriptor

from .stubs import calibration_pb2

_FIELDS = calibration_pb2.EvaluationConfig.DESCRIPTOR.fields_by_name
OPTIONS = tuple(name for name in _FIELDS if name not in ("num_classes", "expected_rows"))


def _enum_choices(field: FieldDescriptor) -> dict:
    """{"softmax": 1, ...}: the value names without the enum's prefix, lower-cased."""
    unspecified = field.enum_type.values_by_number[0].name  # e.g. ACTIVATION_UNSPECIFIED
    prefix = unspecified[: -len("UNSPECIFIED")]
    return {v.name[len(prefix):].lower(): v.number
            for v in field.enum_type.values if v.number != 0}


def _enum_number(name: str, field: FieldDescriptor, value: Any) -> int:
    choices = _enum_choices(field)
    key = value.lower().replace("-", "_") if isinstance(value, str) else value
    if key not in choices:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return choices[key]


def build_config(num_classes: int, rows: int,
                 options: Mapping[str, Any]) -> "calibration_pb2.EvaluationConfig":
    """The config for `rows` rows of `num_classes` logits; TypeError names unknown
    options."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"the evaluation options are {', '.join(OPTIONS)}")
    config = calibration_pb2.EvaluationConfig(num_classes=num_classes, expected_rows=rows)
    for name, value in options.items():
        if value is None:
            continue
        field = _FIELDS[name]
        if field.enum_type is not None:
            value = _enum_number(name, field, value)
        try:
            if field.label == FieldDescriptor.LABEL_REPEATED:
                getattr(config, name).extend([value] if isinstance(value, int) else value)
            else:
                setattr(config, name, value)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{name}={value!r}: {error}") from None
    return config
