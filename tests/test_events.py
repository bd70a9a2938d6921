"""Read events: the payload matches its JSON Schema, times and topics are built right."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.events import (
    ReadEvent,
    attach_crop,
    encode_payload,
    format_time,
    read_event_schema,
    reads_topic,
    to_payload,
    wire_payload,
)
from edge.signing import EventSigner
from edge.types import PlateStatus

MakeEvent = Callable[..., ReadEvent]
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = read_event_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_payload_validates_against_schema(
    make_event: MakeEvent, validator: jsonschema.Draft202012Validator, signer: EventSigner
) -> None:
    stored = encode_payload(to_payload(make_event(), seq=1))
    for crop in (None, b"\xff\xd8jpeg"):
        validator.validate(json.loads(wire_payload(stored, crop, signer.sign)))


def test_unsigned_payload_is_refused_by_schema(
    make_event: MakeEvent, validator: jsonschema.Draft202012Validator
) -> None:
    assert not validator.is_valid(json.loads(encode_payload(to_payload(make_event(), seq=1))))


def test_minimal_pass_validates(
    make_event: MakeEvent, validator: jsonschema.Draft202012Validator, signer: EventSigner
) -> None:
    event = make_event(
        "",
        status=PlateStatus.NONE,
        candidates=(),
        chars=(),
        region=None,
        region_confidence=None,
        confidence=float("nan"),
    )
    payload = to_payload(event, seq=7)
    validator.validate(json.loads(wire_payload(encode_payload(payload), None, signer.sign)))
    assert payload["plate"]["region"] is None
    assert payload["plate"]["confidence"] == 0.0
    assert set(payload["vehicle"].values()) == {None}
    assert {"color", "type", "make", "model"} <= set(payload["vehicle"])


def test_schema_rejects_unknown_keys(
    make_event: MakeEvent, validator: jsonschema.Draft202012Validator, signer: EventSigner
) -> None:
    payload = json.loads(
        wire_payload(encode_payload(to_payload(make_event(), seq=1)), None, signer.sign)
    )
    for where in (payload, payload["plate"], payload["vehicle"], payload["location"]):
        where["surprise"] = 1
        assert not validator.is_valid(payload)
        del where["surprise"]
    assert validator.is_valid(payload)


def test_schema_is_the_packaged_file() -> None:
    packaged = Path(__file__).resolve().parents[1] / "edge" / "schema" / "read-event.v1.json"
    assert read_event_schema() == json.loads(packaged.read_text(encoding="utf-8"))


def test_captured_at_is_best_frame_in_utc_with_milliseconds(make_event: MakeEvent) -> None:
    payload = to_payload(make_event(), seq=1)
    assert payload["captured_at"] == "2026-11-29T06:18:03.123Z"
    assert payload["first_seen"] == "2026-11-29T06:18:02.987Z"
    assert payload["last_seen"] == "2026-11-29T06:18:04.487Z"
    for key in ("captured_at", "first_seen", "last_seen"):
        assert RFC3339_MS.match(payload[key])


def test_format_time_converts_zones_and_takes_naive_as_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 1, 1, 2, 0, 0, 999_999, tzinfo=plus_two)) == (
        "2026-01-01T00:00:00.999Z"
    )
    naive = datetime(2026, 1, 1, 0, 0, 0)  # noqa: DTZ001 - the case under test
    assert format_time(naive) == "2026-01-01T00:00:00.000Z"


def test_event_id_is_a_uuid4_made_once(make_event: MakeEvent) -> None:
    event = make_event()
    assert uuid.UUID(event.event_id).version == 4
    first = encode_payload(to_payload(event, seq=3))
    assert encode_payload(to_payload(event, seq=3)) == first
    assert make_event().event_id != event.event_id


def test_encoding_is_compact_and_sorted(make_event: MakeEvent) -> None:
    raw = encode_payload(to_payload(make_event(), seq=1))
    text = raw.decode("utf-8")
    assert ", " not in text and ": " not in text
    keys = list(json.loads(raw))
    assert keys == sorted(keys)


def test_attach_crop_embeds_base64_deterministically(make_event: MakeEvent) -> None:
    stored = encode_payload(to_payload(make_event(), seq=1))
    assert json.loads(stored)["plate_crop_jpeg"] is None
    crop = b"\xff\xd8\x00\x01\xff\xd9"
    sent = attach_crop(stored, crop)
    assert base64.b64decode(json.loads(sent)["plate_crop_jpeg"]) == crop
    assert attach_crop(stored, crop) == sent
    assert attach_crop(stored, None) == stored


def test_plate_text_never_in_topic(make_event: MakeEvent) -> None:
    event = make_event("SECRET1")
    topic = reads_topic("alpr", event.device_id)
    assert topic == "alpr/pole-17/reads"
    assert "SECRET1" not in topic


@pytest.mark.parametrize("device_id", ["", "a/b", "a+b", "#", "x\0y"])
def test_device_id_that_is_not_one_topic_level_is_refused(device_id: str) -> None:
    with pytest.raises(ValueError, match="topic level"):
        reads_topic("alpr", device_id)


@pytest.mark.parametrize("prefix", ["", "/alpr", "alpr/", "a//b", "alpr/+", "alpr/#"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        reads_topic(prefix, "pole-17")


_level = st.text(
    alphabet=st.characters(exclude_characters="/+#\0", codec="utf-8"),
    min_size=1,
    max_size=20,
)


@given(prefix_levels=st.lists(_level, min_size=1, max_size=4), device_id=_level)
def test_topic_is_prefix_device_reads(prefix_levels: list[str], device_id: str) -> None:
    topic = reads_topic("/".join(prefix_levels), device_id)
    assert topic.split("/") == [*prefix_levels, device_id, "reads"]


@given(before=st.text(max_size=10), bad=st.sampled_from("/+#\0"), after=st.text(max_size=10))
def test_topic_refuses_any_device_id_with_separator_or_wildcard(
    before: str, bad: str, after: str
) -> None:
    with pytest.raises(ValueError, match="topic level"):
        reads_topic("alpr", before + bad + after)


@given(moment=st.datetimes(timezones=st.just(UTC)))
def test_format_time_round_trips_to_the_millisecond(moment: datetime) -> None:
    text = format_time(moment)
    assert RFC3339_MS.match(text)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    assert timedelta(0) <= moment - parsed < timedelta(milliseconds=1)
