"""Train the plate detector: a small CenterNet-style net with a stride-4 centre heatmap and the
4 plate corners regressed as offsets from each centre cell.

Time-bounded and resumable; checkpoints and a progress log go to ``runs/detector/``; an ONNX
export (with its manifest and measured accuracy) is written to ``models/`` every
``--export-every`` minutes so a usable model always exists.

    python scripts/train_detector.py --data ../shared/datasets --minutes 120
    python scripts/train_detector.py --data ../shared/datasets --minutes 180 --resume

``--minutes`` is the total training budget across resumes: resuming a run that trained for 120
minutes with ``--minutes 180`` trains 60 more.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# `python scripts/train_detector.py` puts only scripts/ on sys.path; the imports are from the root
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.synth.scenes import SceneBank, make_sample

log = logging.getLogger("train_detector")

STRIDE = 4
REG_SCALE = 16.0
"""Corner offsets leave the net as small numbers and are scaled to input pixels in the graph."""
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# model


def conv_bn(
    cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, d: int = 1
) -> nn.Sequential:
    pad = d * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, pad, dilation=d, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SeparableBlock(nn.Module):
    """Depthwise 3x3 + pointwise 1x1 (MobileNet v1): cheap on CPU and quantises cleanly."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.dw = conv_bn(cin, cin, 3, stride, groups=cin, d=dilation)
        self.pw = conv_bn(cin, cout, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.pw(self.dw(x))
        return x + y if self.residual else y


class PlateNet(nn.Module):
    def __init__(self, width: float = 1.0) -> None:
        super().__init__()

        def c(n: int) -> int:
            return max(8, round(n * width / 8) * 8)

        self.stem = nn.Sequential(conv_bn(3, c(16), 3, 2), SeparableBlock(c(16), c(24), 2))
        self.s4 = SeparableBlock(c(24), c(24))
        self.s8 = nn.Sequential(SeparableBlock(c(24), c(48), 2), SeparableBlock(c(48), c(48)))
        self.s16 = nn.Sequential(
            SeparableBlock(c(48), c(96), 2),
            SeparableBlock(c(96), c(96)),
            SeparableBlock(c(96), c(96), dilation=2),
            SeparableBlock(c(96), c(96)),
        )
        self.s32 = nn.Sequential(
            SeparableBlock(c(96), c(160), 2),
            SeparableBlock(c(160), c(160)),
            SeparableBlock(c(160), c(160), dilation=2),
        )
        n, m = c(64), c(32)
        self.lat32 = conv_bn(c(160), n, 1)
        self.lat16 = conv_bn(c(96), n, 1)
        self.lat8 = conv_bn(c(48), n, 1)
        self.fuse16 = SeparableBlock(n, n)
        self.fuse8 = SeparableBlock(n, n)
        # Stride 4 dominates the cost (16x the cells of stride 16), so it runs narrow.
        self.top4 = conv_bn(n, m, 1)
        self.lat4 = conv_bn(c(24), m, 1)
        self.fuse4 = SeparableBlock(m, m)
        self.hm_head = nn.Sequential(SeparableBlock(m, m), nn.Conv2d(m, 1, 1))
        self.reg_head = nn.Sequential(SeparableBlock(m, m), nn.Conv2d(m, 8, 1))
        # A prior of ~1% plate cells keeps the focal loss from swamping the first steps.
        nn.init.constant_(self.hm_head[-1].bias, -4.6)  # type: ignore[arg-type]
        nn.init.normal_(self.reg_head[-1].weight, std=0.01)  # type: ignore[arg-type]

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return heatmap logits (N,1,H/4,W/4) and corner offsets in pixels (N,8,H/4,W/4)."""
        f4 = self.s4(self.stem(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p = self.lat32(f32)
        p = self.fuse16(self._up(p) + self.lat16(f16))
        p = self.fuse8(self._up(p) + self.lat8(f8))
        p = self.fuse4(self._up(self.top4(p)) + self.lat4(f4))
        return self.hm_head(p), self.reg_head(p) * REG_SCALE


class ExportWrapper(nn.Module):
    """The graph the runtime sees: uint8-range BGR float in, sigmoid heatmap and corners out."""

    def __init__(self, net: PlateNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, corners = self.net(image)
        return torch.sigmoid(logits), corners


# ---------------------------------------------------------------------------------------------
# targets


def build_targets(
    quads: list[np.ndarray], ignore: list[bool], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Heatmap, ignore mask, corner offsets, regression weight and plate-height maps."""
    g = size // STRIDE
    hm = np.zeros((g, g), np.float32)
    keep = np.ones((g, g), np.float32)
    reg = np.zeros((8, g, g), np.float32)
    wreg = np.zeros((g, g), np.float32)
    hgt = np.ones((g, g), np.float32)
    centres = (np.arange(g, dtype=np.float32) + 0.5) * STRIDE
    for q, ign in zip(quads, ignore, strict=True):
        x0, y0 = q.min(axis=0) / STRIDE
        x1, y1 = q.max(axis=0) / STRIDE
        if ign:
            # Neither reward nor punish anything on a plate that is too small or cut off.
            keep[
                max(int(y0) - 1, 0) : max(int(y1) + 2, 0), max(int(x0) - 1, 0) : max(int(x1) + 2, 0)
            ] = 0
            continue
        c = q.mean(axis=0) / STRIDE - 0.5
        cx, cy = round(float(c[0])), round(float(c[1]))
        if not (0 <= cx < g and 0 <= cy < g):
            continue
        sx = max(0.6, 0.12 * (x1 - x0))
        sy = max(0.6, 0.25 * (y1 - y0))
        ys, xs = np.mgrid[0:g, 0:g].astype(np.float32)
        gauss = np.exp(-((xs - c[0]) ** 2) / (2 * sx**2) - ((ys - c[1]) ** 2) / (2 * sy**2))
        gauss[cy, cx] = 1.0
        hm = np.maximum(hm, gauss)
        sel = (gauss > 0.3) & (gauss > wreg)
        if not sel.any():
            continue
        iy, ix = np.nonzero(sel)
        for k in range(4):
            reg[2 * k, iy, ix] = q[k, 0] - centres[ix]
            reg[2 * k + 1, iy, ix] = q[k, 1] - centres[iy]
        wreg[iy, ix] = gauss[iy, ix]
        height = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
        hgt[iy, ix] = height
    keep = np.maximum(keep, (hm >= 1.0).astype(np.float32))
    return hm, keep, reg, wreg, hgt


class SceneStream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, bank: SceneBank, size: int, seed: int) -> None:
        self.bank = bank
        self.size = size
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        import cv2

        cv2.setNumThreads(1)
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, wid])
        while True:
            s = make_sample(rng, self.bank, self.size)
            hm, keep, reg, wreg, hgt = build_targets(s.quads, s.ignore, self.size)
            img = torch.from_numpy(np.ascontiguousarray(s.image.transpose(2, 0, 1)))
            yield (
                img,
                torch.from_numpy(hm),
                torch.from_numpy(keep),
                torch.from_numpy(reg),
                torch.from_numpy(wreg),
                torch.from_numpy(hgt),
            )


def losses(
    logits: torch.Tensor,
    corners: torch.Tensor,
    hm: torch.Tensor,
    keep: torch.Tensor,
    reg: torch.Tensor,
    wreg: torch.Tensor,
    hgt: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits[:, 0]
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = (hm >= 1.0).float()
    # CenterNet's penalty-reduced focal loss: cells near a centre are only softly negative.
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - hm) ** 4 * (1 - pos) * keep
    n_pos = pos.sum().clamp(min=1.0)
    l_hm = (pos_loss.sum() + neg_loss.sum()) / n_pos
    # Corner error relative to plate height, so a 2 px miss on a 10 px plate costs as much as a
    # 20 px miss on a 100 px plate.
    err = (corners - reg).abs().sum(dim=1) / (hgt + 4.0)
    l_reg = (err * wreg).sum() / wreg.sum().clamp(min=1.0)
    return l_hm, l_reg


def to_input(img_u8: torch.Tensor) -> torch.Tensor:
    """The preprocessing contract (also in the manifest): BGR, float32, pixel / 255."""
    # channels-last lets oneDNN run the convolutions about twice as fast on CPU
    return (img_u8.float() / 255.0).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------
# training loop


def save_atomic(obj: object, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run_export(args: argparse.Namespace, ckpt: Path, *, int8: bool) -> None:
    """Export in a child process so export code can improve while a long run trains, and so an
    export failure never kills training."""
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "export_detector.py"),
        "--checkpoint",
        str(ckpt),
        "--data",
        str(args.data),
        "--out",
        str(args.model_out),
    ]
    if int8:
        cmd.append("--int8")
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    tail = (res.stdout + res.stderr).strip().splitlines()[-6:]
    log.info("export rc=%d in %.0fs: %s", res.returncode, time.monotonic() - t0, " | ".join(tail))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, required=True, help="the shared datasets directory")
    ap.add_argument("--minutes", type=float, default=120.0, help="total training time budget")
    ap.add_argument("--resume", action="store_true", help="continue from runs/detector/last.pt")
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "detector")
    ap.add_argument("--model-out", type=Path, default=REPO / "models" / "plate-detector.onnx")
    ap.add_argument("--size", type=int, default=384, help="training crop size")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    ap.add_argument("--export-every", type=float, default=10.0, help="minutes between exports")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="data worker processes (<= 1 here)")
    args = ap.parse_args()

    args.run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(args.run_dir / "progress.log")],
    )
    # The machine is shared with other training jobs: one compute thread, one data worker.
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    net = PlateNet(args.width)
    # in place, as Module.to always is; torch's overloads leave out its memory_format keyword
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = PlateNet(args.width)
    ema.load_state_dict(net.state_dict())
    ema.eval()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    step, trained_s, samples = 0, 0.0, 0
    last = args.run_dir / "last.pt"
    if args.resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        net.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, trained_s, samples = ck["step"], ck["trained_s"], ck["samples"]
        log.info("resumed at step %d after %.1f min", step, trained_s / 60)
    n_params = sum(p.numel() for p in net.parameters())
    log.info("PlateNet width %.2f: %d parameters; args %s", args.width, n_params, vars(args))

    bank = SceneBank(args.data)
    loader = torch.utils.data.DataLoader(
        SceneStream(bank, args.size, args.seed * 100003 + step),
        batch_size=args.batch,
        num_workers=min(args.workers, 1),
        prefetch_factor=4 if args.workers else None,
        persistent_workers=bool(args.workers),
    )
    budget_s = args.minutes * 60.0
    warmup = 300
    start = time.monotonic() - trained_s
    next_export = time.monotonic() + args.export_every * 60
    next_ckpt = time.monotonic() + 300
    acc = np.zeros(3)
    t_log = time.monotonic()

    def checkpoint() -> None:
        save_atomic(
            {
                "model": net.state_dict(),
                "ema": ema.state_dict(),
                "opt": opt.state_dict(),
                "step": step,
                "trained_s": time.monotonic() - start,
                "samples": samples,
                "width": args.width,
                "size": args.size,
                "data": str(args.data),
            },
            last,
        )

    net.train()
    for batch in loader:
        elapsed = time.monotonic() - start
        if elapsed >= budget_s:
            break
        frac = elapsed / budget_s
        lr = (
            args.lr
            * min(1.0, (step + 1) / warmup)
            * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * frac)))
        )
        for gr in opt.param_groups:
            gr["lr"] = lr
        img, hm, keep, reg, wreg, hgt = batch
        logits, corners = net(to_input(img))
        l_hm, l_reg = losses(logits, corners, hm, keep, reg, wreg, hgt)
        loss = l_hm + 2.0 * l_reg
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)  # what loss.backward() does; Tensor.backward is unannotated
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        samples += img.shape[0]
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pn in zip(ema.state_dict().values(), net.state_dict().values(), strict=True):
                if pe.dtype.is_floating_point:
                    pe.mul_(decay).add_(pn.detach(), alpha=1 - decay)
                else:
                    pe.copy_(pn)
        acc += (l_hm.item(), l_reg.item(), 1)
        if step % 50 == 0:
            now = time.monotonic()
            log.info(
                "step %d  %.1f min  hm %.4f  reg %.4f  lr %.2e  %.1f img/s",
                step,
                (now - start) / 60,
                acc[0] / acc[2],
                acc[1] / acc[2],
                lr,
                50 * args.batch / (now - t_log),
            )
            acc[:] = 0
            t_log = now
        if time.monotonic() >= next_ckpt:
            checkpoint()
            next_ckpt = time.monotonic() + 300
        if time.monotonic() >= next_export:
            checkpoint()
            # Export time is not training time: keep the budget about learning.
            t0 = time.monotonic()
            run_export(args, last, int8=False)
            start += time.monotonic() - t0
            next_export = time.monotonic() + args.export_every * 60
    checkpoint()
    log.info(
        "training done: step %d, %d samples, %.1f min",
        step,
        samples,
        (time.monotonic() - start) / 60,
    )
    run_export(args, last, int8=True)
    (args.run_dir / "done.json").write_text(json.dumps({"step": step, "samples": samples}))


if __name__ == "__main__":
    main()
