"""The ``[models]`` command-line flags ``read`` and ``evaluate`` share: declared and resolved.

``--config`` takes a daemon config's ``[models]`` (the daemon's loader and errors); the other
flags override single keys and are validated as the config is, a bad one being a UsageError
that names the flag.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import UsageError

if TYPE_CHECKING:
    from edge.config import ModelSettings

MODEL_FLAGS = {
    "detector": "--detector",
    "recognizer": "--recognizer",
    "detector_input_size": "--detector-input-size",
    "plate_patterns": "--plate-patterns",
    "recognizer_views": "--recognizer-views",
}
"""``[models]`` keys the command line sets, over the config's."""


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="daemon config: use its [models] settings (the flags below override it)",
    )
    parser.add_argument("--detector", type=Path, help="detector ONNX model")
    parser.add_argument("--recognizer", type=Path, help="recognizer ONNX model")
    parser.add_argument(
        "--detector-input-size",
        metavar="N",
        help="long side of the image as the detector sees it (a multiple of 32, 160-3840)",
    )
    parser.add_argument(
        "--plate-patterns",
        type=comma_list,
        metavar="P,P",
        help='plate formats, L letter, N digit, ? any (e.g. LLLNNNN,LLLNLNN); "" for none',
    )
    parser.add_argument(
        "--recognizer-views",
        type=int,
        metavar="N",
        help="crops read per detected plate and voted: 3 (default) or 1",
    )


def model_settings(args: argparse.Namespace) -> ModelSettings:
    """The daemon config's ``[models]`` (its loader, its errors), else the defaults, with the
    flags given over them, validated as the config is; a bad flag is a UsageError."""
    from pydantic import ValidationError

    from edge.config import ModelSettings, load_settings

    config: Path | None = getattr(args, "config", None)
    base = load_settings(config).models if config is not None else ModelSettings()
    update = {k: v for k in MODEL_FLAGS if (v := getattr(args, k, None)) is not None}
    if not update:
        return base
    try:
        return ModelSettings.model_validate({**base.model_dump(), **update})
    except ValidationError as exc:
        error = exc.errors()[0]
        flag = MODEL_FLAGS.get(str(error["loc"][0]), "--" + str(error["loc"][0]))
        value = error.get("input")
        shown = f" {value}" if isinstance(value, str | int | float) else ""
        reason = error["msg"].removeprefix("Value error, ")
        raise UsageError(f"{flag}{shown}: {reason}") from None
