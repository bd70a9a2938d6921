"""Write the manifest a foreign model needs before alpr-edge will load it.

    python scripts/make_manifest.py models/cct_xs_v1_global.onnx --format fast-plate-ocr \
        [--plate-config models/cct_xs_v1_global_plate_config.yaml]
    python scripts/make_manifest.py models/yolo-v9-t-384-license-plate-end2end.onnx \
        --format yolov9-e2e

Computes the model's sha256, copies a fast-plate-ocr plate config into the manifest, writes
``MODEL.json`` beside the model (atomically) and loads the model with it to prove they fit; on
failure nothing is left behind. An existing manifest is replaced only with ``--force``.
No torch needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.errors import ModelError
from edge.inference.formats import FOREIGN_FORMATS, write_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the .onnx file")
    parser.add_argument("--format", required=True, choices=FOREIGN_FORMATS, dest="fmt")
    parser.add_argument(
        "--plate-config",
        type=Path,
        help="fast-plate-ocr plate config YAML (default: MODEL.yaml or MODEL_plate_config.yaml)",
    )
    parser.add_argument(
        "--input-size", type=int, help="YOLOv9 input side, only for a graph with dynamic size"
    )
    parser.add_argument("--name", help="model name in the manifest (default: the file's stem)")
    parser.add_argument("--force", action="store_true", help="replace an existing manifest")
    args = parser.parse_args(argv)
    try:
        path = write_manifest(
            args.model,
            args.fmt,
            plate_config=args.plate_config,
            input_size=args.input_size,
            name=args.name,
            replace=args.force,
        )
    except ModelError as exc:
        print(f"make_manifest: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
