"""fast-plate-ocr's plate config YAML, read strictly and without PyYAML.

The plate config files fast-plate-ocr writes are flat: comments and one ``key: value`` per
line, where a value is a plain or quoted scalar, a flow list (``[114, 114, 114]``) or a block
list (``- item`` lines under an empty ``key:``). That subset is parsed here; anything else
(nesting, anchors, tags, multi-line strings, unknown keys) is an error naming the file and line,
never a silent misread. Ten lines of configuration do not justify a YAML dependency on every
pole, and a strict reader of the subset fails more clearly than a general one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ModelError

Scalar = str | int | bool | None
Value = Scalar | list[Scalar]

INTERPOLATIONS = ("nearest", "linear", "cubic", "area", "lanczos4")
COLOR_MODES = ("grayscale", "rgb")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?:\s+|$)")
_INT = re.compile(r"[-+]?[0-9]+")
_ESCAPES = {"\\": "\\", '"': '"', "/": "/", "t": "\t", "n": "\n"}


@dataclass(frozen=True, slots=True)
class PlateOcrConfig:
    """How a fast-plate-ocr model wants its crops and how to read its output."""

    max_plate_slots: int
    alphabet: str
    pad_char: str
    img_height: int
    img_width: int
    keep_aspect_ratio: bool = False
    interpolation: str = "linear"
    image_color_mode: str = "grayscale"
    padding_color: tuple[int, int, int] = (114, 114, 114)
    plate_regions: tuple[str, ...] = ()

    @property
    def channels(self) -> int:
        return 3 if self.image_color_mode == "rgb" else 1

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["padding_color"] = list(self.padding_color)
        data["plate_regions"] = list(self.plate_regions)
        return data


class _Syntax(ValueError):
    pass


def read_plate_config(path: Path) -> PlateOcrConfig:
    """Parse and check the plate config at ``path``; ModelError names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"plate config {path} cannot be read: {exc}") from None
    values = parse_flat_yaml(text, path)
    try:
        return plate_config_from_mapping(values)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"plate config {path}: {exc}") from None


@dataclass(slots=True)
class _Document:
    values: dict[str, Value] = field(default_factory=dict)
    block_keys: set[str] = field(default_factory=set)
    """Keys written as an empty ``key:``: a block list follows, or they are null."""
    open_list: str | None = None
    """The key the next ``- item`` line belongs to."""


def parse_flat_yaml(text: str, path: Path) -> dict[str, Value]:
    """The ``key: value`` pairs of a flat YAML document (see the module docstring)."""
    doc = _Document()
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.rstrip("\r \t")
        if not line.strip() or line.lstrip().startswith("#") or (number == 1 and line == "---"):
            continue
        try:
            _parse_line(line, doc)
        except _Syntax as exc:
            raise ModelError(f"plate config {path} line {number}: {exc}") from None
    # An empty "key:" with no items under it is YAML's null, not an empty list.
    return {k: (None if k in doc.block_keys and v == [] else v) for k, v in doc.values.items()}


def _parse_line(line: str, doc: _Document) -> None:
    stripped = line.lstrip()
    if stripped.startswith("- ") or stripped == "-":
        if doc.open_list is None:
            raise _Syntax("a list item without an empty 'key:' line above it")
        item, end = _scalar(stripped, 1, "")
        _only_comment(stripped, end)
        block = doc.values[doc.open_list]
        if isinstance(block, list):
            block.append(item)
        return
    if line != stripped:
        raise _Syntax("indented line: nested YAML is not supported")
    match = _KEY.match(line)
    if match is None:
        raise _Syntax("expected 'key: value'")
    key = match.group(1)
    if key in doc.values:
        raise _Syntax(f"{key!r} appears twice")
    rest = line[match.end() :]
    if not rest or rest.startswith("#"):
        doc.values[key] = []
        doc.block_keys.add(key)
        doc.open_list = key
        return
    doc.open_list = None
    doc.values[key] = _flow_list(rest) if rest.startswith("[") else _whole_scalar(rest)


def _whole_scalar(text: str) -> Scalar:
    value, end = _scalar(text, 0, "")
    _only_comment(text, end)
    return value


def _flow_list(text: str) -> list[Scalar]:
    items: list[Scalar] = []
    i = 1
    while True:
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "]" and not items:
            i += 1
            break
        item, i = _scalar(text, i, ",]")
        items.append(item)
        if i >= len(text):
            raise _Syntax("unclosed '['")
        i += 1
        if text[i - 1] == "]":
            break
    _only_comment(text, i)
    return items


def _scalar(text: str, i: int, stops: str) -> tuple[Scalar, int]:
    """One scalar starting at or after ``text[i]``; returns it and the index just past it."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] in "'\"":
        value, i = _quoted(text, i)
        while i < len(text) and text[i] == " ":
            i += 1
        if stops and (i >= len(text) or text[i] not in stops):
            raise _Syntax(f"expected one of {stops!r} after a quoted value")
        return value, i
    start = i
    while i < len(text) and text[i] not in stops:
        if text[i] == "#" and text[i - 1] in " \t":
            break
        i += 1
    plain = text[start:i].strip()
    if plain[:1] in ("&", "*", "!", "|", ">", "{", "[", "@", "`", "%"):
        raise _Syntax(f"unsupported YAML syntax {plain[:1]!r}")
    if ": " in plain or plain.endswith(":"):
        raise _Syntax(f"{plain!r} looks like a nested mapping; quote the value")
    if plain in ("", "~", "null", "Null", "NULL"):
        return None, i
    if plain in ("true", "True", "TRUE"):
        return True, i
    if plain in ("false", "False", "FALSE"):
        return False, i
    if _INT.fullmatch(plain):
        return int(plain), i
    return plain, i


def _quoted(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    out: list[str] = []
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            if quote == "'" and text[i + 1 : i + 2] == "'":
                out.append("'")
                i += 2
                continue
            return "".join(out), i + 1
        if ch == "\\" and quote == '"':
            escaped = text[i + 1 : i + 2]
            if escaped not in _ESCAPES:
                raise _Syntax(f"unsupported escape '\\{escaped}' in a double-quoted value")
            out.append(_ESCAPES[escaped])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise _Syntax(f"unclosed {quote} quote")


def _only_comment(text: str, i: int) -> None:
    rest = text[i:].strip()
    if rest and not rest.startswith("#"):
        raise _Syntax(f"unexpected {rest!r} after the value")


def plate_config_from_mapping(values: dict[str, Any]) -> PlateOcrConfig:
    """Check parsed values (from YAML or a manifest) and build the config.

    Raises ValueError or TypeError saying which key is wrong."""
    known = set(PlateOcrConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}")
    required = ("max_plate_slots", "alphabet", "pad_char", "img_height", "img_width")
    missing = [k for k in required if values.get(k) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    slots, height, width = (values[k] for k in ("max_plate_slots", "img_height", "img_width"))
    for key, number in (("max_plate_slots", slots), ("img_height", height), ("img_width", width)):
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise ValueError(f"{key} must be a positive integer, got {number!r}")
    alphabet, pad = values["alphabet"], values["pad_char"]
    if not isinstance(alphabet, str) or len(alphabet) < 2:
        raise ValueError(f"alphabet must be a string of 2 or more characters, got {alphabet!r}")
    if len(set(alphabet)) != len(alphabet):
        raise ValueError("alphabet has repeated characters")
    if not isinstance(pad, str) or len(pad) != 1 or pad not in alphabet:
        raise ValueError(f"pad_char must be one character of the alphabet, got {pad!r}")
    keep = values.get("keep_aspect_ratio", False)
    if not isinstance(keep, bool):
        raise TypeError(f"keep_aspect_ratio must be true or false, got {keep!r}")
    interpolation = values.get("interpolation", "linear")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r} is not one of {INTERPOLATIONS}")
    mode = values.get("image_color_mode", "grayscale")
    if mode not in COLOR_MODES:
        raise ValueError(f"image_color_mode {mode!r} is not one of {COLOR_MODES}")
    return PlateOcrConfig(
        max_plate_slots=slots,
        alphabet=alphabet,
        pad_char=pad,
        img_height=height,
        img_width=width,
        keep_aspect_ratio=keep,
        interpolation=str(interpolation),
        image_color_mode=str(mode),
        padding_color=_padding(values.get("padding_color", 114)),
        plate_regions=_regions(values.get("plate_regions")),
    )


def _padding(value: Any) -> tuple[int, int, int]:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return (value, value, value)
    if (
        isinstance(value, list | tuple)
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise ValueError(f"padding_color must be 0-255 or three of them, got {value!r}")


def _regions(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"plate_regions must be a list of names, got {value!r}")
