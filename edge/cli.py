"""The ``alpr-edge`` command line: run, check, read, evaluate, bench.

Every failure a user can cause ends in one line on stderr and a distinct exit code
(78 for configuration), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge import __version__
from edge.errors import EX_SOFTWARE, EdgeError, UsageError
from edge.logs import LogFormat, setup_logging
from edge.model_flags import add_model_arguments, model_settings
from edge.provision.commands import add_provision_commands

log = logging.getLogger("edge")

Handler = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:  # not subscriptable at run time
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def _command(
    sub: _SubParsers,
    name: str,
    handler: Handler,
    *,
    help: str,
    description: str,
    config: bool = False,
) -> argparse.ArgumentParser:
    """A subcommand that runs ``handler``; with ``config`` it takes the required --config."""
    parser = sub.add_parser(name, help=help, description=description)
    if config:
        parser.add_argument("--config", type=Path, required=True, help="TOML config file")
    parser.set_defaults(handler=handler)
    return parser


def _setup_logging(level: str, fmt: LogFormat = "auto") -> None:
    setup_logging(level, fmt)


def _cmd_run(args: argparse.Namespace) -> int:
    from edge.app import run_daemon
    from edge.config import load_settings

    settings = load_settings(args.config)
    _setup_logging(settings.log_level, settings.log_format)
    return run_daemon(settings, config_path=args.config)


def _cmd_check(args: argparse.Namespace) -> int:
    from edge.config import load_settings

    settings = load_settings(args.config)
    _setup_logging("warning")
    from edge.check import run_checks

    return run_checks(settings, connect=args.connect, out=sys.stdout)


def _cmd_read(args: argparse.Namespace) -> int:
    from edge.imageio import load_image
    from edge.pipeline import PlateReader

    _setup_logging("warning")
    models = model_settings(args)
    reader = PlateReader.from_settings(models)
    failed = 0
    for path in args.images:
        try:
            image = load_image(path)
        except EdgeError as exc:
            print(f"alpr-edge: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        results = reader.read(image)
        plates = [
            {
                "text": r.recognition.text,
                "confidence": round(r.recognition.confidence, 4),
                "status": str(r.recognition.status),
                "box": [round(v, 1) for v in r.detection.box],
                "corners": (
                    [[round(x, 1), round(y, 1)] for x, y in r.detection.corners]
                    if r.detection.corners
                    else None
                ),
            }
            for r in results
        ]
        if args.json:
            print(json.dumps({"image": str(path), "plates": plates}, sort_keys=True))
        else:
            shown = ", ".join(f"{p['text']} ({p['confidence']:.2f})" for p in plates) or "-"
            print(f"{path}: {shown}")
    return 1 if failed else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edge.evaluate import run_evaluate

    _setup_logging("warning")
    return run_evaluate(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench import run_bench

    _setup_logging("warning")
    return run_bench(args)


def _cmd_flush(args: argparse.Namespace) -> int:
    from edge.config import load_settings
    from edge.flush import flush_outbox

    settings = load_settings(args.config)
    _setup_logging("error")
    return flush_outbox(settings, out=sys.stdout)


def _cmd_device_key(args: argparse.Namespace) -> int:
    from edge.config import load_settings
    from edge.signing import load_signer

    settings = load_settings(args.config)
    _setup_logging("warning")
    print(load_signer(settings).public_key_pem(), end="")
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from edge.config import load_settings
    from edge.snapshot import annotate, find_camera, take_snapshot, write_image_atomic

    settings = load_settings(args.config)
    _setup_logging("warning")
    camera = find_camera(settings, args.camera)
    snapshot = take_snapshot(settings, camera, wait_s=args.wait)
    write_image_atomic(args.out, annotate(snapshot, camera))
    print(f"{args.out}: {snapshot.summary()}")
    return 0


def _cmd_commission(args: argparse.Namespace) -> int:
    from edge.commission import run_commission
    from edge.config import load_settings
    from edge.snapshot import find_camera

    settings = load_settings(args.config)
    _setup_logging("warning")
    if args.camera is None and len(settings.cameras) > 1:
        known = ", ".join(c.id for c in settings.cameras)
        raise UsageError(f"--camera is needed: the config has {known}")
    camera = settings.cameras[0] if args.camera is None else find_camera(settings, args.camera)
    report = run_commission(settings, camera, vehicles=args.vehicles, timeout_s=args.timeout)
    for line in report.lines():
        print(line)
    if args.json:
        print(json.dumps(report.as_json(), sort_keys=True))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _cmd_reads_search(args: argparse.Namespace) -> int:
    from edge.config import load_settings
    from edge.lookup import parse_time, search_reads

    settings = load_settings(args.config)
    _setup_logging("warning")
    result = search_reads(
        settings,
        plate=args.plate,
        reason=args.reason,
        user=args.user,
        since=None if args.since is None else parse_time(args.since, "--since"),
        until=None if args.until is None else parse_time(args.until, "--until"),
    )
    for read in result.reads:
        if args.json:
            print(
                json.dumps(
                    {
                        "seq": read.seq,
                        "event_id": read.event_id,
                        "camera_id": read.camera_id,
                        "captured_at": read.captured_at,
                        "plate": read.plate,
                        "confidence": read.confidence,
                        "hit": read.hit,
                    },
                    sort_keys=True,
                )
            )
        else:
            hit = " hit" if read.hit else ""
            print(
                f"{read.captured_at} {read.camera_id} {read.plate} "
                f"({read.confidence:.2f}) seq={read.seq}{hit}"
            )
    print(f"{len(result.reads)} read(s); logged as audit entry {result.audit.id}", file=sys.stderr)
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from edge.audit import AuditLog
    from edge.config import load_settings
    from edge.errors import EX_DATAERR

    settings = load_settings(args.config)
    _setup_logging("warning")
    audit = AuditLog(settings.storage.dir / "audit.db")
    try:
        result = audit.verify()
    finally:
        audit.close()
    if result.ok:
        print(f"audit log: {result.entries} entries, chain intact")
        return 0
    print(f"audit log: chain broken at entry {result.broken_at}: {result.reason}", file=sys.stderr)
    return EX_DATAERR


def _cmd_audit_list(args: argparse.Namespace) -> int:
    from edge.atrest import load_cipher
    from edge.audit import AuditLog
    from edge.config import load_settings

    settings = load_settings(args.config)
    _setup_logging("warning")
    audit = AuditLog(settings.storage.dir / "audit.db", load_cipher(settings))
    try:
        for entry in audit.entries(limit=args.limit):
            query = audit.open_query(entry)
            if args.json:
                print(json.dumps({**entry.content(), "query": query, "hash": entry.hash}))
            else:
                print(
                    f"{entry.id} {entry.at} user={entry.user} ({entry.os_user}) "
                    f"{entry.action} {json.dumps(query, sort_keys=True)} "
                    f"results={entry.results} reason={entry.reason!r}"
                )
    finally:
        audit.close()
    return 0


def _add_reads_and_audit(sub: _SubParsers) -> None:
    reads = sub.add_parser(
        "reads",
        help="look up stored reads (audited)",
        description="Look up reads stored on this device. Every look-up is logged in the "
        "audit log, with who asked and why, before any result is shown.",
    )
    reads_sub = reads.add_subparsers(dest="reads_command", required=True, metavar="ACTION")
    search = _command(
        reads_sub,
        "search",
        _cmd_reads_search,
        help="find reads of a plate",
        description="Find stored reads of a plate: exact, or a pattern with ? (one "
        "character) and * (any run), at least four letters or digits. Requires --reason "
        "and --user; the look-up is appended to the audit log first.",
        config=True,
    )
    search.add_argument("--plate", required=True, help="plate or pattern, e.g. ABC1234, AB?12*")
    search.add_argument("--since", help="from this time (RFC 3339 or a date; UTC if no zone)")
    search.add_argument("--until", help="up to this time")
    search.add_argument("--reason", required=True, help='why, e.g. "case 24-1234"')
    search.add_argument("--user", required=True, help="who is asking")
    search.add_argument("--json", action="store_true", help="one JSON object per read")

    audit = sub.add_parser(
        "audit",
        help="list or verify the audit log of local look-ups",
        description="The hash-chained audit log of local look-ups of stored reads.",
    )
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    _command(
        audit_sub,
        "verify",
        _cmd_audit_verify,
        help="check the hash chain",
        description="Check every entry's hash and its link to the entry before it; exit 0 "
        "when intact, 65 with the first broken entry otherwise.",
        config=True,
    )
    listing = _command(
        audit_sub,
        "list",
        _cmd_audit_list,
        help="show the entries",
        description="Show entries.",
        config=True,
    )
    listing.add_argument("--limit", type=int, default=None, help="only the newest N")
    listing.add_argument("--json", action="store_true", help="one JSON object per entry")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alpr-edge",
        description="Edge daemon for fixed licence plate recognition cameras.",
    )
    parser.add_argument("--version", action="version", version=f"alpr-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _command(
        sub, "run", _cmd_run, help="run the daemon", description="Run the daemon.", config=True
    )

    check = _command(
        sub,
        "check",
        _cmd_check,
        help="validate the config (and with --connect: camera, models, broker)",
        description="Validate the config; with --connect also open each camera, load the "
        "models and connect to the broker. Exit code 0 only when everything passes.",
        config=True,
    )
    check.add_argument("--connect", action="store_true", help="also try camera, models, broker")

    read = _command(
        sub,
        "read",
        _cmd_read,
        help="read plates on still images",
        description="One-shot plate recognition of still images.",
    )
    read.add_argument("images", nargs="+", type=Path, help="image files")
    read.add_argument("--json", action="store_true", help="one JSON object per image")
    add_model_arguments(read)

    evaluate = _command(
        sub,
        "evaluate",
        _cmd_evaluate,
        help="measure accuracy on a labelled dataset",
        description="Measure detection and recognition accuracy on a folder in the OpenALPR "
        "benchmark layout (NAME.jpg + NAME.txt), or the recognizer alone on a folder of "
        "plate crops with labels.csv (file,text; with a state column, the plate region "
        "model too), or the vehicle type/colour models on vehicle crops with labels.csv "
        "(file,vehicle_type and/or file,color).",
    )
    evaluate.add_argument("dataset", type=Path, help="dataset folder")
    evaluate.add_argument("--json", action="store_true", help="last line: one JSON object")
    evaluate.add_argument(
        "--misses",
        action="store_true",
        help="first list each image not read exactly: its labelled text and what was read",
    )
    add_model_arguments(evaluate)
    evaluate.add_argument("--limit", type=int, default=0, help="only the first N items")
    evaluate.add_argument(
        "--split",
        choices=("all", "holdout", "train"),
        default="all",
        help="crops datasets: the held-out split the training scripts never see, or the rest",
    )

    bench = _command(
        sub,
        "bench",
        _cmd_bench,
        help="measure pipeline speed on a video clip",
        description="Run the daemon's pipeline on a clip as fast as possible and print "
        "frames per second, milliseconds per stage and peak memory.",
    )
    bench.add_argument("video", type=Path, help="video file")
    bench.add_argument("--json", action="store_true", help="last line: one JSON object")
    bench.add_argument("--config", type=Path, help="config file for model and tracking settings")

    _command(
        sub,
        "flush",
        _cmd_flush,
        help="publish everything in the outbox now",
        description="Publish every read waiting in the outbox and exit 0 once it is empty; "
        "exit 69 with one line when the broker cannot be reached.",
        config=True,
    )

    _command(
        sub,
        "device-key",
        _cmd_device_key,
        help="print the public key that verifies this device's reads",
        description="Print the device's Ed25519 public key (PEM) that verifies the signature "
        "of every read; the key pair is made first if there is none yet.",
        config=True,
    )

    snapshot = _command(
        sub,
        "snapshot",
        _cmd_snapshot,
        help="save one annotated frame for aiming and focusing a camera",
        description="Save one frame from a camera with the region of interest, each plate's "
        "box and corners, what was read and the character height in pixels drawn on it. "
        "Stop the service first: a camera serves one process at a time.",
        config=True,
    )
    snapshot.add_argument("--camera", required=True, help="camera id from the config")
    snapshot.add_argument("--out", type=Path, required=True, help="image to write (.png, .jpg)")
    snapshot.add_argument(
        "--wait",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for a frame with a plate (default 5; else the last frame)",
    )

    commission = _command(
        sub,
        "commission",
        _cmd_commission,
        help="watch the next N vehicle passes and say whether the camera setup is good",
        description="Run the pipeline on a camera for the next N vehicle passes and report "
        "the read rate, character heights, blur and exposure of the plates, with a verdict "
        "(PASS or ADJUST) and advice. Exit code 0 once the report is made, whatever the "
        "verdict. Stop the service first: a camera serves one process at a time.",
        config=True,
    )
    commission.add_argument("--camera", help="camera id from the config (default: the only one)")
    commission.add_argument(
        "--vehicles", type=_positive_int, required=True, metavar="N", help="passes to watch"
    )
    commission.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="report on the passes seen after this many seconds (default 600)",
    )
    commission.add_argument("--json", action="store_true", help="last line: one JSON object")
    add_provision_commands(sub)
    _add_reads_and_audit(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except EdgeError as exc:
        for line in exc.message.splitlines():
            print(f"alpr-edge: error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the last line of defence: one line, not a traceback
        log.debug("unexpected error", exc_info=True)
        print(f"alpr-edge: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_SOFTWARE


if __name__ == "__main__":
    raise SystemExit(main())
