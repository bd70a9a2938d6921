"""Export the tiny fast-plate-ocr and YOLOv9 end-to-end models the format tests load.

    python scripts/export_foreign_formats.py            # writes tests/data/ (needs torch)

Both are the project's own hand-set torch modules exported in the two foreign formats, so that
tests/test_model_formats.py proves the run-time adapters decode each format correctly without
anybody's weights (and without torch: CI loads the committed exports):

* ``fast-plate-ocr-tiny.onnx`` + ``.yaml``: uint8 N x 64 x 128 x 1 in, 8 slots x 37 characters
  of softmax out. A bright crop (mean pixel >= 192) reads ``TEXT`` padded with ``_`` at the
  per-slot logits in ``slot_logits``; a dark one (mean <= 64) reads all padding, i.e. nothing.
* ``yolov9-e2e-tiny.onnx``: float 1 x 3 x 320 x 320 RGB in, K x 7 out (``0, x1, y1, x2, y2,
  0, 0.9``): the bounding box of the pixels whiter than 0.9 in every channel, or no row.

Each gets its manifest from ``edge.inference.formats.write_manifest``, as an agency's would.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge.inference.formats import write_manifest  # noqa: E402

OPSET = 17
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
PAD = "_"
SLOTS = 8
TEXT = "AB12CD"
RUNNER_UP = {"B": "8", "1": "I", "D": "0"}
"""Characters given a second-best logit, so alternatives are tested too."""
BEST_LOGIT, RUNNER_UP_LOGIT = 5.0, 3.0
IMG_HEIGHT, IMG_WIDTH = 64, 128
YOLO_SIZE = 320
WHITE = 0.9
SCORE = 0.9

PLATE_CONFIG = f"""# fast-plate-ocr plate config of the project's tiny test model
max_plate_slots: {SLOTS}
alphabet: '{ALPHABET}'
pad_char: '{PAD}'
img_height: {IMG_HEIGHT}
img_width: {IMG_WIDTH}
keep_aspect_ratio: false
interpolation: linear
image_color_mode: grayscale
padding_color: [114, 114, 114]
"""


def slot_logits(text: str) -> np.ndarray:
    """SLOTS x alphabet logits that read ``text`` padded with PAD."""
    logits = np.zeros((SLOTS, len(ALPHABET)), np.float32)
    for slot, char in enumerate(text.ljust(SLOTS, PAD)):
        logits[slot, ALPHABET.index(char)] = BEST_LOGIT
        if char in RUNNER_UP:
            logits[slot, ALPHABET.index(RUNNER_UP[char])] = RUNNER_UP_LOGIT
    return logits


class TinyFastPlateOcr(nn.Module):
    text: torch.Tensor
    blank: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("text", torch.from_numpy(slot_logits(TEXT)))
        self.register_buffer("blank", torch.from_numpy(slot_logits("")))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # 0 for a dark crop, 1 for a bright one, linear between.
        bright = (image.float().mean(dim=(1, 2, 3)) * (2.0 / 255.0) - 0.5).clamp(0.0, 1.0)
        logits = self.blank + bright[:, None, None] * (self.text - self.blank)
        return torch.softmax(logits, dim=-1)


class TinyYolov9E2E(nn.Module):
    index: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("index", torch.arange(YOLO_SIZE, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        white = (image.amin(dim=1) > WHITE).float()[0]  # S x S
        cols, rows = white.amax(dim=0), white.amax(dim=1)
        size = float(YOLO_SIZE)
        x1 = size - (cols * (size - self.index)).amax()
        x2 = (cols * (self.index + 1.0)).amax()
        y1 = size - (rows * (size - self.index)).amax()
        y2 = (rows * (self.index + 1.0)).amax()
        zero = cols.amax() * 0.0
        row = torch.stack([zero, x1, y1, x2, y2, zero, cols.amax() * SCORE]).unsqueeze(0)
        return row[row[:, 6] > 0.0]


def export(module: nn.Module, example: torch.Tensor, path: Path, names: tuple[str, str]) -> None:
    dynamic = {names[0]: {0: "N"}, names[1]: {0: "N"}} if example.dtype == torch.uint8 else None
    if dynamic is None:
        dynamic = {names[1]: {0: "K"}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / path.name
        torch.onnx.export(
            module.eval(),
            (example,),
            str(tmp_path),
            input_names=[names[0]],
            output_names=[names[1]],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
        path.write_bytes(tmp_path.read_bytes())


def check(path: Path, module: nn.Module, example: torch.Tensor) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    want = module(example).detach().numpy()
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-5):
        raise SystemExit(f"{path}: onnxruntime output differs from torch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "data")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    ocr = out / "fast-plate-ocr-tiny.onnx"
    crops = torch.tensor(
        np.stack([np.full((IMG_HEIGHT, IMG_WIDTH, 1), v, np.uint8) for v in (255, 0, 160)])
    )
    export(TinyFastPlateOcr(), crops, ocr, ("input", "plate"))
    check(ocr, TinyFastPlateOcr(), crops)
    ocr.with_suffix(".yaml").write_text(PLATE_CONFIG, encoding="utf-8")
    write_manifest(ocr, "fast-plate-ocr", replace=True)

    yolo = out / "yolov9-e2e-tiny.onnx"
    frame = torch.full((1, 3, YOLO_SIZE, YOLO_SIZE), 114 / 255)
    frame[:, :, 100:140, 50:200] = 1.0
    export(TinyYolov9E2E(), frame, yolo, ("images", "output"))
    check(yolo, TinyYolov9E2E(), frame)
    check(yolo, TinyYolov9E2E(), torch.zeros((1, 3, YOLO_SIZE, YOLO_SIZE)))
    write_manifest(yolo, "yolov9-e2e", replace=True)

    for path in (ocr, yolo):
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes) and its manifest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
