"""Synthetic licence plate crops for training and testing the plate recognizer.

Public API (stable: the demo-video generator imports it)::

    render_plate_clean(rng, text=None, style=None) -> (image_bgr, label)
        A clean, front-on plate, BGR uint8. About 2:1 for US styles, the style's own aspect
        otherwise (EU ~4.7:1, BR ~3.1:1). ``label`` is the readable text, A-Z0-9 only:
        separators (dash, dot, space, logo) are drawn but never part of the label. ``text``
        may contain separators ("ABC-123", "AB 12.CD"); ``None`` picks a format that suits
        the style. ``style`` is one of ``STYLES`` or ``None`` for a random one.
    augment_crop(rng, image_bgr) -> image_bgr
        Camera-like degradation of a plate crop: perspective, rotation, scale / low
        resolution, tight or loose margins, motion and defocus blur, low light, IR, glare,
        rain, dirt, noise, JPEG artefacts. Never hides characters, so the label stays valid.
    render_plate(rng) -> (image_bgr, label, status)
        A training crop: a random clean plate, sometimes cut off at a side or partly
        occluded (``status == "partial"``, label = the characters still visible), then
        ``augment_crop``. ``status`` is one of "full", "partial", "paper".
    render_non_plate(rng) -> image_bgr
        A crop that is not a plate (car body, grille, artwork, texture), for the "none" class.
    configure(datasets) -> None
        Where /work/shared/datasets lives; ``configure(None)`` turns dataset images off
        (procedural backgrounds only, e.g. for demo material). Never called: the renderer
        looks at $ALPR_DATASETS, then ../shared/datasets beside the repository, and
        otherwise falls back to procedural backgrounds. Dataset images (us-plate-designs artwork,
        vehicle-colour photos) are read at generation time only and never written anywhere.

All randomness comes from the caller's ``numpy.random.Generator`` so a seed reproduces a
sample. Fonts come from Debian packages: fonts-dejavu, fonts-liberation, fonts-freefont and,
when installed, fonts-roboto-unhinted (Roboto Condensed) and fonts-croscore (Arimo); missing
fonts are skipped. Training renders (``render_plate``) add, when installed, fonts-bebas-neue,
fonts-urw-base35, fonts-texgyre, fonts-open-sans, fonts-b612, fonts-league-spartan and
fonts-noto-core (``bash scripts/setup.sh --training`` installs them).
"""

from __future__ import annotations

import csv
import os
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

T = TypeVar("T")

__all__ = [
    "ALPHABET",
    "STATUSES",
    "STYLES",
    "augment_crop",
    "configure",
    "random_text",
    "render_non_plate",
    "render_plate",
    "render_plate_clean",
]

ALPHABET = string.digits + string.ascii_uppercase
STATUSES = ("full", "partial", "paper")
STYLES = (
    "us",
    "us_dark",
    "us_design",
    "eu_de",
    "eu_fr",
    "eu_nl",
    "eu_ro",
    "eu_other",
    "br_old",
    "br_mercosul",
    "paper",
)
# How often each style is drawn when none is asked for: US dominates our deployments.
_STYLE_WEIGHTS = np.array([0.22, 0.08, 0.25, 0.06, 0.04, 0.04, 0.05, 0.08, 0.06, 0.08, 0.12])
_SEPARATORS = "-. *"  # "*" stands for a drawn logo/emblem between character groups

_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype/liberation"),
    Path("/usr/share/fonts/truetype/freefont"),
    Path("/usr/share/fonts/truetype/roboto/unhinted"),
    Path("/usr/share/fonts/truetype/roboto/unhinted/RobotoTTF"),
    Path("/usr/share/fonts/truetype/croscore"),
    Path("/usr/share/fonts/opentype/bebas-neue"),
    Path("/usr/share/fonts/opentype/urw-base35"),
    Path("/usr/share/fonts/opentype/b612"),
    Path("/usr/share/fonts/truetype/open-sans"),
    Path("/usr/share/fonts/opentype/league-spartan"),
    Path("/usr/share/texmf/fonts/opentype/public/tex-gyre"),
    Path("/usr/share/fonts/truetype/noto"),
)


def _existing(names: tuple[str, ...]) -> tuple[Path, ...]:
    found = []
    for name in names:
        for folder in _FONT_DIRS:
            if (folder / name).is_file():
                found.append(folder / name)
                break
    return tuple(found)


# Narrow, bold faces close to plate lettering; each is squeezed further at render time.
_PLATE_FONTS = _existing(
    (
        "DejaVuSansCondensed-Bold.ttf",
        "LiberationSansNarrow-Bold.ttf",
        "LiberationSansNarrow-Regular.ttf",
        "RobotoCondensed-Bold.ttf",
        "RobotoCondensed-Medium.ttf",
        "RobotoCondensed-Regular.ttf",
        "DejaVuSans-Bold.ttf",
        "LiberationSans-Bold.ttf",
        "FreeSansBold.ttf",
        "Arimo-Bold.ttf",
        "DejaVuSansMono-Bold.ttf",
        "LiberationMono-Bold.ttf",
        "DejaVuSans.ttf",
    )
)
# Training only (render_plate), when installed: other condensed and rounded-rectangle letter
# shapes, so the O/0/D/Q and 1/I distinctions are not learnt from one family of faces. Clean
# renders (demo clips, tests) keep to the base faces above so they look the same everywhere.
_EXTRA_PLATE_FONTS = _existing(
    (
        "BebasNeue-Bold.otf",
        "BebasNeue-Regular.otf",
        "NimbusSansNarrow-Bold.otf",
        "NimbusSansNarrow-Regular.otf",
        "texgyreheroscn-bold.otf",
        "OpenSans-CondBold.ttf",
        "B612-Bold.otf",
        "B612Mono-Bold.otf",
        "LeagueSpartan-Bold.otf",
        "NotoSans-Bold.ttf",
    )
)
_PAPER_FONTS = _existing(
    (
        "LiberationSans-Regular.ttf",
        "DejaVuSans.ttf",
        "FreeSans.ttf",
        "LiberationMono-Regular.ttf",
        "DejaVuSansMono.ttf",
        "FreeMono.ttf",
        "RobotoCondensed-Regular.ttf",
        "Arimo-Regular.ttf",
        "DejaVuSansCondensed.ttf",
    )
)
_HEADER_FONTS = _existing(
    (
        "DejaVuSerif-Bold.ttf",
        "DejaVuSerifCondensed-BoldItalic.ttf",
        "LiberationSerif-Bold.ttf",
        "LiberationSerif-BoldItalic.ttf",
        "FreeSerifBoldItalic.ttf",
        "FreeSerifBold.ttf",
        "DejaVuSans-Bold.ttf",
        "LiberationSans-Bold.ttf",
        "LiberationSans-BoldItalic.ttf",
        "FreeSansBoldOblique.ttf",
        "RobotoCondensed-BoldItalic.ttf",
        "DejaVuSansCondensed.ttf",
    )
)
if not _PLATE_FONTS:
    raise RuntimeError("no plate fonts found: apt-get install fonts-dejavu fonts-liberation")

_STATE_NAMES = (
    "ALABAMA", "Alaska", "ARIZONA", "Arkansas", "California", "COLORADO", "Connecticut",
    "DELAWARE", "Florida", "GEORGIA", "Hawaii", "IDAHO", "Illinois", "INDIANA", "Iowa",
    "KANSAS", "Kentucky", "Louisiana", "MAINE", "Maryland", "MASSACHUSETTS", "Michigan",
    "MINNESOTA", "Mississippi", "MISSOURI", "Montana", "NEBRASKA", "Nevada", "NEW HAMPSHIRE",
    "New Jersey", "NEW MEXICO", "New York", "NORTH CAROLINA", "North Dakota", "OHIO",
    "Oklahoma", "OREGON", "Pennsylvania", "RHODE ISLAND", "South Carolina", "SOUTH DAKOTA",
    "Tennessee", "TEXAS", "Utah", "VERMONT", "Virginia", "WASHINGTON", "West Virginia",
    "WISCONSIN", "Wyoming", "District of Columbia",
)  # fmt: skip
_SLOGANS = (
    "Land of Lincoln", "The Empire State", "Garden State", "Live Free or Die",
    "Sunshine State", "Great Lakes", "Famous Potatoes", "Greatest Snow on Earth",
    "First in Flight", "Land of Enchantment", "Ocean State", "The Natural State",
    "Heart of Dixie", "Wild, Wonderful", "Lone Star State", "Peach State", "Show Me State",
    "America's Dairyland", "Pure Michigan", "Explore Minnesota", "In God We Trust",
    "Taxation Without Representation", "Spirit of America", "Vacationland", "Aloha State",
    "Centennial 1912-2012", "SESQUICENTENNIAL", "The Volunteer State", "Virginia is for Lovers",
    "EXPLORE", "COUNTY", "JACKSON", "Grand Canyon State", "Battle Born", "Big Sky Country",
    "NATIONAL GUARD", "VETERAN", "SPECIAL PURPOSE", "TRUCK", "APPORTIONED", "DEALER",
    "PASSENGER", "COMMERCIAL", "MOTORCYCLE", "TRAILER", "Choose Life", "Save the Bay",
)  # fmt: skip
_DEALERS = (
    "AUTO MALL", "MOTORS", "TOYOTA OF", "HONDA", "CHEVROLET", "FORD", "NISSAN", "KIA",
    "CAR CITY", "SUPERSTORE", "QUALITY CARS", "CARMAX", "HYUNDAI", "SUBARU", "AUTO GROUP",
    "WE FINANCE", "TRUCKS", "PREOWNED", "CERTIFIED",
)  # fmt: skip
_BR_CITIES = (
    "SAO PAULO - SP", "RIO DE JANEIRO - RJ", "CURITIBA - PR", "BELO HORIZONTE - MG",
    "PORTO ALEGRE - RS", "CAMPINAS - SP", "SALVADOR - BA", "RECIFE - PE", "SANTOS - SP",
)  # fmt: skip

# Text colours that plates actually use, BGR.
_DARK_INKS = ((20, 20, 20), (90, 30, 10), (110, 40, 20), (30, 30, 120), (20, 70, 20), (60, 20, 60))
_LIGHT_INKS = ((245, 245, 245), (40, 200, 240), (230, 230, 230), (120, 220, 250))
_LIGHT_BGS = (
    (235, 235, 235),
    (225, 240, 245),
    (200, 225, 235),
    (245, 230, 215),
    (215, 230, 215),
    (170, 220, 250),
    (250, 240, 220),
    (205, 205, 205),
)
_DARK_BGS = ((120, 40, 10), (20, 20, 20), (30, 80, 20), (60, 20, 110), (90, 60, 20), (40, 40, 150))


@dataclass(frozen=True)
class _Plate:
    """A rendered plate plus what augmentation needs to keep its label true."""

    image: np.ndarray
    text: str
    char_spans: tuple[tuple[int, int], ...]  # x0, x1 of each label character
    text_band: tuple[int, int]  # y0, y1 of the main characters
    paper: bool


# --------------------------------------------------------------------------- data dirs

_datasets_dir: Path | None = None
_auto_datasets = True


def configure(datasets: Path | str | None) -> None:
    """Use this datasets folder for artwork and car-body backgrounds; None: use none."""
    global _datasets_dir, _auto_datasets
    _datasets_dir = Path(datasets) if datasets is not None else None
    _auto_datasets = False
    _design_pool.cache_clear()
    _surround_pool.cache_clear()


def _find_datasets() -> Path | None:
    if not _auto_datasets:
        return _datasets_dir if _datasets_dir is not None and _datasets_dir.is_dir() else None
    candidates = []
    if os.environ.get("ALPR_DATASETS"):
        candidates.append(Path(os.environ["ALPR_DATASETS"]))
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "datasets")
    for folder in candidates:
        if folder.is_dir():
            return folder
    return None


def _read_images(paths: list[Path], size: tuple[int, int]) -> list[np.ndarray]:
    images = []
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is not None:
            images.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    return images


@lru_cache(maxsize=1)
def _design_pool() -> tuple[np.ndarray, ...]:
    """Up to 400 state plate designs at 240x120, their number area washed out.

    The designs carry sample numbers ("ABC1234") that are not our label, so the middle band
    is replaced by a heavy blur of itself: the artwork's colours stay, its characters go.
    The state name and slogan at top and bottom stay as realistic distractors.
    """
    root = _find_datasets()
    if root is None or not (root / "us-plate-designs" / "labels.csv").is_file():
        return ()
    with (root / "us-plate-designs" / "labels.csv").open(newline="") as fh:
        files = [root / "us-plate-designs" / row["file"] for row in csv.DictReader(fh)]
    pick = np.random.default_rng(1234).permutation(len(files))[:400]
    images = _read_images([files[i] for i in pick], (240, 120))
    washed = []
    mask: np.ndarray = np.zeros((120, 1), np.float32)
    mask[26:96] = 1.0
    mask = cv2.GaussianBlur(mask, (1, 15), 4)[:, :, None]
    for img in images:
        blurred = cv2.GaussianBlur(img, (0, 0), 9)
        out = img.astype(np.float32) * (1 - mask) + blurred.astype(np.float32) * mask
        washed.append(out.astype(np.uint8))
    return tuple(washed)


@lru_cache(maxsize=1)
def _surround_pool() -> tuple[np.ndarray, ...]:
    """Car photos to put around a plate (bumper, paint, grille) and to cut non-plates from."""
    root = _find_datasets()
    if root is None:
        return ()
    files: list[Path] = []
    for sub in ("vehicle-colour", "vehicle-type-crops"):
        labels = root / sub / "labels.csv"
        if labels.is_file():
            with labels.open(newline="") as fh:
                files += [root / sub / row["file"] for row in csv.DictReader(fh)]
    if not files:
        return ()
    pick = np.random.default_rng(4321).permutation(len(files))[:300]
    return tuple(_read_images([files[i] for i in pick], (256, 192)))


# --------------------------------------------------------------------------- glyphs


@lru_cache(maxsize=64)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


@lru_cache(maxsize=4096)
def _glyph(path: Path, text: str) -> np.ndarray:
    """Tight alpha mask (float32 0..1) of ``text`` rendered at 64 px; cached per font."""
    font = _font(path, 64)
    left, top, right, bottom = font.getbbox(text)
    # getbbox gives ints for a FreeType font; the stubs say float
    w, h = max(1, int(right - left) + 4), max(1, int(bottom - top) + 4)
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, font=font, fill=255)
    mask = np.asarray(canvas, dtype=np.float32) / 255.0
    ys, xs = np.nonzero(mask > 0.05)
    if len(xs) == 0:
        return np.zeros((8, 4), np.float32)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _paste(canvas: np.ndarray, mask: np.ndarray, x: int, y: int, color: tuple[int, ...]) -> None:
    """Alpha-blend a solid colour through ``mask`` at (x, y), clipped to the canvas."""
    h, w = mask.shape
    ch, cw = canvas.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, cw), min(y + h, ch)
    if x1 <= x0 or y1 <= y0:
        return
    m = mask[y0 - y : y1 - y, x0 - x : x1 - x, None]
    region = canvas[y0:y1, x0:x1].astype(np.float32)
    region = region * (1 - m) + np.array(color, np.float32) * m
    canvas[y0:y1, x0:x1] = region.astype(np.uint8)


def _draw_text(
    canvas: np.ndarray,
    text: str,
    font: Path,
    box: tuple[int, int, int, int],
    color: tuple[int, ...],
    squeeze: float = 1.0,
) -> None:
    """Draw ``text`` as one string fitted into box (x, y, w, h), centred, never wider."""
    mask = _glyph(font, text)
    x, y, w, h = box
    if h < 3 or w < 3:
        return
    scale = h / mask.shape[0]
    tw = max(1, int(mask.shape[1] * scale * squeeze))
    tw = min(tw, w)
    resized = cv2.resize(mask, (tw, h), interpolation=cv2.INTER_AREA)
    _paste(canvas, resized, x + (w - tw) // 2, y, color)


# --------------------------------------------------------------------------- text


def _pattern_text(rng: np.random.Generator, pattern: str) -> str:
    out = []
    for p in pattern:
        if p == "L":
            out.append(string.ascii_uppercase[rng.integers(26)])
        elif p == "D":
            out.append(string.digits[rng.integers(10)])
        elif p == "X":
            out.append(ALPHABET[rng.integers(36)])
        else:
            out.append(p)
    return "".join(out)


_US_PATTERNS = (
    "LLL_DDDD", "DLLL_DDD", "DDD_LLL", "LLL_DDD", "LL_DDDDD", "DDDDDD", "LLDDDD", "LLL_DDL",
    "D_LLL_DDD", "DDDD_LL", "DLL_DDDD", "DD_DDDD", "LDD_DDD", "LL_DDDD", "DDD_DDD", "LLLDDD",
    "DLLLDDD", "LLLDDDD", "DDDLLL", "DD_LLL_D", "LDDLLL", "DDLL_DD", "DDDDDDD",
)  # fmt: skip


# Other European countries' current formats, as their band code and character groups: the
# recognizer then knows the letter/digit layouts of Europe's common plates, which settles an O
# or 0 that the plate's font draws alike (e.g. SK 302OZ) the way a reader of that plate would.
_EU_OTHER_FORMATS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SK", ("LL-DDDLL", "LL DDDLL")),
    ("CZ", ("DLD DDDD", "DLL DDDD", "DLD-DDDD")),
    ("PL", ("LL DDDDD", "LLL DDDD", "LL DDDLL", "LLL DDLL", "LL DDLLL")),
    ("I", ("LL DDDLL", "LL-DDDLL")),
    ("E", ("DDDD LLL", "DDDD-LLL")),
    ("A", ("L DDDD L", "LL DDD LL", "L-DDDDL")),
    ("B", ("D-LLL-DDD", "LLL-DDD")),
    ("H", ("LLL-DDD", "LL LL-DDD")),
    ("HR", ("LL DDD-LL", "LL DDDD-L")),
    ("SLO", ("LL LL-DDD", "LL DD-LLL")),
    ("GB", ("LLDD LLL",)),
    ("P", ("LL-DD-LL", "DD-LL-DD")),
    ("LT", ("LLL DDD",)),
    ("BG", ("LL DDDD LL", "L DDDD LL")),
    ("S", ("LLL DDL", "LLL DDD")),
    ("DK", ("LL DD DDD",)),
)


def random_text(rng: np.random.Generator, style: str = "us") -> str:
    """A plate string in a format that suits ``style``, with separators ("-", ".", " ", "*")."""
    if style == "eu_de":
        district = _pattern_text(rng, "L" * int(rng.integers(1, 4)))
        letters = _pattern_text(rng, "L" * int(rng.integers(1, 3)))
        digits = _pattern_text(rng, "D" * int(rng.integers(1, 5))).lstrip("0") or "7"
        return f"{district}*{letters} {digits}"[: 8 + 2]
    if style == "eu_fr":
        return _pattern_text(rng, "LL-DDD-LL")
    if style == "eu_other":
        _, formats = _EU_OTHER_FORMATS[rng.integers(len(_EU_OTHER_FORMATS))]
        return _pattern_text(rng, formats[rng.integers(len(formats))])
    if style == "eu_nl":
        pats: tuple[str, ...] = (
            "LL-DD-LL",
            "DD-LLL-D",
            "D-LLL-DD",
            "LL-DDD-L",
            "L-DDD-LL",
            "LLL-DD-L",
            "DD-LL-LL",
        )
        return _pattern_text(rng, pats[rng.integers(len(pats))])
    if style == "eu_ro":
        pats = ("L DD LLL", "L DDD LLL", "LL DD LLL")
        return _pattern_text(rng, pats[rng.integers(len(pats))])
    if style == "br_old":
        return _pattern_text(rng, "LLL-DDDD" if rng.random() < 0.8 else "LLL DDDD")
    if style == "br_mercosul":
        return _pattern_text(rng, "LLLDLDD")
    if style == "paper":
        pats = ("DDDDDDD", "LDDDDDD", "DDLLLDD", "DDDDDDDD", "LLDDDDD", "DDDDLL", "DDDDDD")
        return _pattern_text(rng, pats[rng.integers(len(pats))])
    if rng.random() < 0.12:  # vanity plate, any 2-8 characters
        return _pattern_text(rng, "X" * int(rng.integers(2, 9)))
    pattern = _US_PATTERNS[rng.integers(len(_US_PATTERNS))]
    sep = _SEPARATORS[rng.integers(len(_SEPARATORS))] if rng.random() < 0.8 else ""
    return _pattern_text(rng, pattern).replace("_", sep)


def _label(text: str) -> str:
    return "".join(c for c in text.upper() if c in ALPHABET)


# --------------------------------------------------------------------------- drawing parts


def _pick(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(len(items)))]


def _jitter(rng: np.random.Generator, color: tuple[int, ...], amount: int = 18) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)


def _background(rng: np.random.Generator, w: int, h: int, base: tuple[int, ...]) -> np.ndarray:
    """Solid, gradient or two-tone plate background around ``base``."""
    img: np.ndarray = np.empty((h, w, 3), np.float32)
    img[:] = _jitter(rng, base)
    kind = rng.random()
    if kind < 0.4:
        other = np.array(_jitter(rng, base, 60), np.float32)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        if rng.random() < 0.5:
            t = np.abs(t - 0.5) * 2
        img = img * (1 - t) + other * t
    elif kind < 0.55:  # a band of colour at top or bottom, like many state designs
        band = np.array(_pick(rng, _LIGHT_BGS + _DARK_BGS), np.float32)
        y0 = int(h * rng.uniform(0.0, 0.1))
        y1 = y0 + int(h * rng.uniform(0.12, 0.25))
        if rng.random() < 0.5:
            y0, y1 = h - y1, h - y0
        img[y0:y1] = band
    elif kind < 0.7:  # faint artwork: soft blobs
        for _ in range(int(rng.integers(1, 4))):
            c = (int(rng.integers(w)), int(rng.integers(h)))
            axes = (int(rng.integers(w // 8, w // 2)), int(rng.integers(h // 8, h // 2)))
            col = _jitter(rng, base, 50)
            layer = img.copy()
            cv2.ellipse(layer, c, axes, float(rng.uniform(0, 180)), 0, 360, col, -1)
            img = cv2.addWeighted(img, 0.6, layer, 0.4, 0)
    clipped: np.ndarray = np.clip(img, 0, 255)
    return clipped.astype(np.uint8)


def _draw_logo(rng: np.random.Generator, canvas: np.ndarray, cx: int, cy: int, r: int) -> None:
    color = _pick(rng, (*_DARK_INKS, (40, 120, 230), (30, 160, 60), (200, 120, 30)))
    kind = rng.integers(4)
    if kind == 0:
        cv2.circle(canvas, (cx, cy), r, color, -1, cv2.LINE_AA)
    elif kind == 1:  # star
        star = []
        for k in range(10):
            rr = r if k % 2 == 0 else r * 0.45
            a = -np.pi / 2 + k * np.pi / 5
            star.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
        cv2.fillPoly(canvas, [np.array(star, np.int32)], color, cv2.LINE_AA)
    elif kind == 2:  # state outline-ish blob
        pts = np.array(
            [
                (
                    cx + r * rng.uniform(0.5, 1.1) * np.cos(a),
                    cy + r * rng.uniform(0.5, 1.1) * np.sin(a),
                )
                for a in np.linspace(0, 2 * np.pi, 9)[:-1]
            ],
            np.int32,
        )
        cv2.fillPoly(canvas, [pts], color, cv2.LINE_AA)
    else:  # heart / emblem: two circles and a triangle
        cv2.circle(canvas, (cx - r // 2, cy - r // 3), r // 2, color, -1, cv2.LINE_AA)
        cv2.circle(canvas, (cx + r // 2, cy - r // 3), r // 2, color, -1, cv2.LINE_AA)
        tri = np.array([(cx - r, cy - r // 4), (cx + r, cy - r // 4), (cx, cy + r)], np.int32)
        cv2.fillPoly(canvas, [tri], color, cv2.LINE_AA)


def _draw_main_text(
    rng: np.random.Generator,
    canvas: np.ndarray,
    text: str,
    box: tuple[int, int, int, int],
    font: Path,
    ink: tuple[int, ...],
    squeeze: float,
    *,
    seal: bool = False,
    letter_o_as_zero: bool = False,
) -> tuple[tuple[int, int], ...]:
    """Lay the characters of ``text`` out in box (x, y, w, h); return each label char's span.

    Separators become gaps with a dash, dot or logo drawn in them; they are not labelled.
    ``letter_o_as_zero`` draws the letter O with the font's digit 0, a little wider, as plate
    fonts that do not tell them apart do (Brazil's old plates); the label stays O.
    """
    x, y, w, h = box
    glyphs: list[tuple[str, np.ndarray | None, float]] = []
    for c in text:
        if c in ALPHABET:
            as_zero = letter_o_as_zero and c == "O"
            glyph = _glyph(font, "0" if as_zero else c)
            aspect = glyph.shape[1] / glyph.shape[0] * (1.1 if as_zero else 1.0)
            glyphs.append((c, glyph, aspect * squeeze))
        elif c == " ":
            glyphs.append((c, None, rng.uniform(0.15, 0.45)))
        elif c in "-.":
            glyphs.append((c, None, rng.uniform(0.25, 0.5)))
        elif c == "*":
            glyphs.append((c, None, rng.uniform(0.55, 0.9) if seal else rng.uniform(0.4, 0.8)))
    gap = rng.uniform(0.04, 0.16)
    widths = [gw for _, _, gw in glyphs]
    total = (sum(widths) + gap * max(0, len(glyphs) - 1)) * h
    ch = h
    if total > w:  # first squeeze horizontally (plate fonts are narrow), then shrink
        factor = w / total
        if factor < 0.7:
            ch = int(h * max(0.45, factor / 0.7))
            factor = min(1.0, w / (total * ch / h)) * 0.999
        widths = [gw * factor for gw in widths]
        gap *= factor
        total = (sum(widths) + gap * max(0, len(glyphs) - 1)) * ch
    cx = x + (w - total) / 2 + rng.uniform(-0.5, 0.5) * max(0.0, w - total) * 0.5
    cy = y + (h - ch) // 2
    spans = []
    for (c, g, _), gw in zip(glyphs, widths, strict=True):
        pw = max(1, round(gw * ch))
        if g is not None:
            mask = cv2.resize(g, (pw, ch), interpolation=cv2.INTER_AREA)
            _paste(canvas, mask, int(cx), cy, ink)
            spans.append((int(cx), int(cx) + pw))
        elif c == "-":
            bh = max(1, int(ch * rng.uniform(0.07, 0.12)))
            cv2.rectangle(
                canvas,
                (int(cx + pw * 0.15), cy + ch // 2 - bh // 2),
                (int(cx + pw * 0.85), cy + ch // 2 + bh // 2),
                ink,
                -1,
            )
        elif c == ".":
            r = max(1, int(ch * rng.uniform(0.04, 0.08)))
            cv2.circle(canvas, (int(cx + pw / 2), cy + ch // 2), r, ink, -1, cv2.LINE_AA)
        elif c == "*":
            r = max(2, int(min(pw, ch) * rng.uniform(0.3, 0.45)))
            if seal:  # German registration seals: two round stickers stacked
                for dy in (-0.22, 0.22):
                    col = _pick(
                        rng, ((60, 60, 200), (200, 120, 40), (40, 160, 60), (190, 190, 190))
                    )
                    cv2.circle(
                        canvas,
                        (int(cx + pw / 2), int(cy + ch / 2 + dy * ch)),
                        int(ch * 0.18),
                        col,
                        -1,
                        cv2.LINE_AA,
                    )
            else:
                _draw_logo(rng, canvas, int(cx + pw / 2), cy + ch // 2, r)
        cx += pw + gap * ch
    return tuple(spans)


def _draw_bolts(rng: np.random.Generator, canvas: np.ndarray) -> None:
    h, w = canvas.shape[:2]
    r = max(2, int(h * rng.uniform(0.03, 0.05)))
    ys = [int(h * rng.uniform(0.06, 0.12))]
    if rng.random() < 0.5:
        ys.append(h - ys[0])
    xo = rng.uniform(0.12, 0.25)
    for yy in ys:
        for xx in (int(w * xo), int(w * (1 - xo))):
            cv2.circle(canvas, (xx, yy), r, (150, 150, 150), -1, cv2.LINE_AA)
            cv2.circle(canvas, (xx, yy), max(1, r // 2), (70, 70, 70), -1, cv2.LINE_AA)


def _draw_sticker(rng: np.random.Generator, canvas: np.ndarray, font: Path) -> None:
    h, w = canvas.shape[:2]
    sw, sh = int(w * rng.uniform(0.08, 0.14)), int(h * rng.uniform(0.12, 0.2))
    corner = rng.integers(4)
    x = (
        int(w * rng.uniform(0.02, 0.06))
        if corner in (0, 2)
        else w - sw - int(w * rng.uniform(0.02, 0.06))
    )
    y = (
        int(h * rng.uniform(0.03, 0.08))
        if corner in (0, 1)
        else h - sh - int(h * rng.uniform(0.03, 0.08))
    )
    col = _pick(
        rng,
        (
            (40, 40, 220),
            (40, 200, 240),
            (60, 170, 60),
            (220, 120, 40),
            (200, 60, 200),
            (250, 250, 250),
            (30, 140, 250),
        ),
    )
    cv2.rectangle(canvas, (x, y), (x + sw, y + sh), col, -1)
    txt = _pattern_text(rng, "DD" if rng.random() < 0.7 else "LLL")
    _draw_text(canvas, txt, font, (x + 1, y + sh // 4, sw - 2, sh // 2), (20, 20, 20))


def _draw_stacked(
    rng: np.random.Generator,
    canvas: np.ndarray,
    box: tuple[int, int, int, int],
    font: Path,
    ink: tuple[int, ...],
) -> None:
    """Small characters stacked vertically (e.g. disabled or county marks): not labelled."""
    x, y, w, h = box
    n = int(rng.integers(2, 4))
    letters = _pattern_text(rng, "L" * n) if rng.random() < 0.7 else _pattern_text(rng, "X" * n)
    step = h // n
    for i, c in enumerate(letters):
        _draw_text(canvas, c, font, (x, y + i * step + 1, w, max(3, step - 2)), ink, 0.8)


def _draw_frame(rng: np.random.Generator, plate: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Thin plate border, chrome frame or dealer frame; returns image and x/y offsets added."""
    h, w = plate.shape[:2]
    kind = rng.random()
    if kind < 0.5:
        t = max(1, int(h * rng.uniform(0.01, 0.04)))
        col = _jitter(rng, _pick(rng, ((30, 30, 30), (120, 40, 10), (200, 200, 200))))
        cv2.rectangle(plate, (t // 2 + 1, t // 2 + 1), (w - t // 2 - 2, h - t // 2 - 2), col, t)
        return plate, 0, 0
    # dealer / chrome frame wider than the plate, with text in its lower bar
    sx, top = int(w * rng.uniform(0.02, 0.05)), int(h * rng.uniform(0.03, 0.1))
    bottom = int(h * rng.uniform(0.05, 0.2))
    col = _jitter(rng, _pick(rng, ((25, 25, 25), (180, 180, 180), (40, 40, 40), (60, 60, 110))))
    out = np.empty((h + top + bottom, w + 2 * sx, 3), np.uint8)
    out[:] = col
    inner_top = int(top * 0.4)
    out[inner_top : inner_top + h, sx : sx + w] = plate
    # the frame covers a strip of the plate's top and bottom (where slogans are)
    overlap = int(h * rng.uniform(0.0, 0.12))
    out[inner_top + h - overlap :, :] = col
    if bottom > 6:
        ink = (230, 230, 230) if sum(col) < 300 else (20, 20, 20)
        dealer = str(_pick(rng, _DEALERS))
        bh = out.shape[0] - (inner_top + h - overlap)
        _draw_text(
            out,
            dealer,
            _pick(rng, _HEADER_FONTS),
            (sx, inner_top + h - overlap + bh // 5, w, max(3, bh * 3 // 5)),
            ink,
        )
    return out, sx, inner_top


# --------------------------------------------------------------------------- styles


def _render_us(
    rng: np.random.Generator, text: str, variant: str, fonts: tuple[Path, ...]
) -> _Plate:
    w, h = 240, 120
    designs = _design_pool() if variant == "us_design" else ()
    if designs:
        canvas = designs[rng.integers(len(designs))].copy()
        lum = float(cv2.cvtColor(canvas[30:90], cv2.COLOR_BGR2GRAY).mean())
        ink: tuple[int, ...] = _pick(rng, _DARK_INKS if lum > 110 else _LIGHT_INKS)
        header = rng.random() < 0.15
    else:
        dark = variant == "us_dark"
        canvas = _background(rng, w, h, _pick(rng, _DARK_BGS if dark else _LIGHT_BGS))
        ink = _pick(rng, _LIGHT_INKS if dark else _DARK_INKS)
        header = rng.random() < 0.9
    ink = _jitter(rng, ink, 12)
    font: Path = _pick(rng, fonts)
    hfont: Path = _pick(rng, _HEADER_FONTS)
    if header:
        hh = int(h * rng.uniform(0.12, 0.2))
        hcol = _jitter(rng, _pick(rng, _DARK_INKS + _LIGHT_INKS + ((40, 40, 200),)))
        hw = int(w * rng.uniform(0.4, 0.8))
        _draw_text(
            canvas,
            str(_pick(rng, _STATE_NAMES)),
            hfont,
            ((w - hw) // 2, int(h * rng.uniform(0.03, 0.08)), hw, hh),
            hcol,
        )
    if rng.random() < 0.7 and variant != "us_design":
        fh = int(h * rng.uniform(0.08, 0.13))
        fw = int(w * rng.uniform(0.3, 0.7))
        _draw_text(
            canvas,
            str(_pick(rng, _SLOGANS)),
            _pick(rng, _HEADER_FONTS),
            ((w - fw) // 2, h - fh - int(h * rng.uniform(0.04, 0.08)), fw, fh),
            _jitter(rng, _pick(rng, (*_DARK_INKS, (40, 40, 200)))),
        )
    ch = int(h * rng.uniform(0.4, 0.55))
    y0 = int(h * 0.5 - ch / 2 + h * rng.uniform(-0.05, 0.06))
    left, right = int(w * rng.uniform(0.04, 0.09)), int(w * rng.uniform(0.04, 0.09))
    if rng.random() < 0.15:  # stacked small characters beside the number
        sw = int(w * 0.07)
        on_left = rng.random() < 0.5
        sx = left if on_left else w - right - sw
        _draw_stacked(rng, canvas, (sx, y0, sw, ch), font, ink)
        if on_left:
            left += sw + 3
        else:
            right += sw + 3
    spans = _draw_main_text(
        rng, canvas, text, (left, y0, w - left - right, ch), font, ink, rng.uniform(0.7, 1.0)
    )
    if rng.random() < 0.6:
        _draw_sticker(rng, canvas, font)
    if rng.random() < 0.6:
        _draw_bolts(rng, canvas)
    return _Plate(canvas, _label(text), spans, (y0, y0 + ch), paper=False)


def _eu_band(rng: np.random.Generator, canvas: np.ndarray, code: str, bw: int) -> None:
    h = canvas.shape[0]
    canvas[:, :bw] = _jitter(rng, (150, 50, 0), 15)
    cx, cy, r = bw // 2, int(h * 0.32), int(min(bw, h) * 0.3)
    for k in range(12):  # circle of yellow stars, drawn as dots at this size
        a = k * np.pi / 6
        cv2.circle(
            canvas,
            (int(cx + r * np.cos(a)), int(cy + r * np.sin(a))),
            max(1, h // 40),
            (0, 200, 255),
            -1,
            cv2.LINE_AA,
        )
    _draw_text(
        canvas, code, _PLATE_FONTS[0], (2, int(h * 0.62), bw - 4, int(h * 0.26)), (240, 240, 240)
    )


def _eu_other_code(rng: np.random.Generator, text: str) -> str:
    """The band code of a country whose format ``text`` has ("EU" when none has it)."""
    shape = "".join("L" if c.isalpha() else "D" if c.isdigit() else c for c in text)
    codes = [code for code, formats in _EU_OTHER_FORMATS if shape in formats]
    return _pick(rng, codes) if codes else "EU"


def _render_eu(rng: np.random.Generator, text: str, style: str, fonts: tuple[Path, ...]) -> _Plate:
    w, h = 470, 100
    code = {"eu_de": "D", "eu_fr": "F", "eu_nl": "NL", "eu_ro": "RO"}.get(style, "EU")
    if style == "eu_other":
        code = _eu_other_code(rng, text)
    bg = (40, 200, 245) if style == "eu_nl" and rng.random() < 0.7 else (235, 235, 235)
    canvas = (
        _background(rng, w, h, bg)
        if rng.random() < 0.3
        else np.full((h, w, 3), _jitter(rng, bg, 10), np.uint8)
    )
    bw = int(w * rng.uniform(0.08, 0.1))
    _eu_band(rng, canvas, code, bw)
    right = int(w * 0.04)
    if style == "eu_fr":  # regional badge on the right
        rw = int(w * 0.08)
        canvas[:, w - rw :] = _jitter(rng, (150, 50, 0), 15)
        _draw_text(
            canvas,
            _pattern_text(rng, "DD"),
            _PLATE_FONTS[0],
            (w - rw + 2, int(h * 0.6), rw - 4, int(h * 0.28)),
            (240, 240, 240),
        )
        right = rw + int(w * 0.02)
    font: Path = _pick(rng, fonts)
    ch = int(h * rng.uniform(0.62, 0.74))
    y0 = (h - ch) // 2 + int(rng.integers(-3, 4))
    left = bw + int(w * 0.03)
    spans = _draw_main_text(
        rng,
        canvas,
        text,
        (left, y0, w - left - right, ch),
        font,
        _jitter(rng, (20, 20, 20), 10),
        rng.uniform(0.75, 1.0),
        seal=style == "eu_de",
        # Many European plate fonts (SK, CZ, A, ...) draw the letter O as the digit 0.
        letter_o_as_zero=style == "eu_other" and rng.random() < 0.5,
    )
    t = max(1, h // 40)
    cv2.rectangle(canvas, (0, 0), (w - 1, h - 1), (20, 20, 20), t)
    return _Plate(canvas, _label(text), spans, (y0, y0 + ch), paper=False)


def _render_br(rng: np.random.Generator, text: str, style: str, fonts: tuple[Path, ...]) -> _Plate:
    w, h = 400, 130
    font: Path = _pick(rng, fonts)
    if style == "br_mercosul":
        canvas = np.full((h, w, 3), _jitter(rng, (240, 240, 240), 10), np.uint8)
        band = int(h * 0.22)
        canvas[:band] = _jitter(rng, (160, 60, 0), 15)
        _draw_text(
            canvas,
            "BRASIL",
            _PLATE_FONTS[0],
            (w // 3, int(band * 0.15), w // 3, int(band * 0.7)),
            (245, 245, 245),
        )
        # flag and Mercosul emblem in the band
        canvas[int(band * 0.2) : int(band * 0.8), w - int(w * 0.1) : w - int(w * 0.03)] = (
            60,
            150,
            40,
        )
        cv2.circle(canvas, (int(w * 0.06), band // 2), band // 3, (240, 240, 240), 1, cv2.LINE_AA)
        ink: tuple[int, ...] = _jitter(rng, (20, 20, 20), 10)
        top = band + int(h * 0.06)
    else:
        base = (170, 170, 170) if rng.random() < 0.8 else (40, 40, 190)  # grey private, red hire
        canvas = _background(rng, w, h, base)
        ink = (30, 30, 30) if base[0] > 100 else (240, 240, 240)
        top = int(h * 0.22)
        _draw_text(
            canvas,
            str(_pick(rng, _BR_CITIES)),
            font,
            (w // 6, int(h * 0.04), w * 2 // 3, int(h * 0.14)),
            ink,
        )
    ch = int((h - top) * rng.uniform(0.72, 0.86))
    y0 = top + (h - top - ch) // 2
    # Brazil's old plate font draws the letter O as narrow as the digit 0 (its photos taught the
    # recognizer to read it as Q or D); Mercosul's font tells them apart.
    spans = _draw_main_text(
        rng,
        canvas,
        text,
        (int(w * 0.05), y0, int(w * 0.9), ch),
        font,
        ink,
        rng.uniform(0.7, 0.95),
        letter_o_as_zero=style == "br_old" and "O" in text and rng.random() < 0.7,
    )
    cv2.rectangle(canvas, (0, 0), (w - 1, h - 1), (30, 30, 30), max(1, h // 40))
    if rng.random() < 0.5:
        _draw_bolts(rng, canvas)
    return _Plate(canvas, _label(text), spans, (y0, y0 + ch), paper=False)


def _render_paper(rng: np.random.Generator, text: str) -> _Plate:
    w, h = 240, 120
    paper = _jitter(rng, (240, 240, 240), 15)
    canvas = np.full((h, w, 3), paper, np.uint8)
    # paper texture: faint noise and a fold or crease
    noise = rng.normal(0, 4, (h, w, 1))
    canvas = np.clip(canvas.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        x = int(rng.integers(w // 4, 3 * w // 4))
        cv2.line(
            canvas, (x, 0), (x + int(rng.integers(-10, 10)), h), _jitter(rng, (200, 200, 200)), 1
        )
    font: Path = _pick(rng, _PAPER_FONTS)
    ink = _jitter(rng, (25, 25, 25), 20)
    header = str(
        _pick(
            rng,
            (
                "TEMPORARY TAG",
                "TEMPORARY",
                "TEMP TAG",
                "TEMPORARY PERMIT",
                "IN TRANSIT",
                "DEALER TEMPORARY",
                "30 DAY PERMIT",
            ),
        )
    )
    _draw_text(
        canvas, header, font, (int(w * 0.15), int(h * 0.05), int(w * 0.7), int(h * 0.12)), ink
    )
    month, day, year = rng.integers(1, 13), rng.integers(1, 29), rng.integers(2019, 2031)
    footer = (
        f"EXPIRES {month:02d}/{day:02d}/{year}"
        if rng.random() < 0.7
        else f"EXP {month}/{day}/{year % 100}"
    )
    _draw_text(canvas, footer, font, (int(w * 0.1), int(h * 0.8), int(w * 0.8), int(h * 0.11)), ink)
    if rng.random() < 0.5:
        _draw_text(
            canvas,
            str(_pick(rng, _STATE_NAMES)).upper(),
            font,
            (int(w * 0.3), int(h * 0.18), int(w * 0.4), int(h * 0.08)),
            ink,
        )
    if rng.random() < 0.4:  # barcode strip
        x = int(w * rng.uniform(0.05, 0.6))
        for _ in range(30):
            x += int(rng.integers(1, 4))
            cv2.line(canvas, (x, int(h * 0.7)), (x, int(h * 0.78)), ink, 1)
    ch = int(h * rng.uniform(0.3, 0.45))
    y0 = int(h * 0.5 - ch / 2)
    spans = _draw_main_text(
        rng, canvas, text, (int(w * 0.06), y0, int(w * 0.88), ch), font, ink, rng.uniform(0.7, 1.0)
    )
    return _Plate(canvas, _label(text), spans, (y0, y0 + ch), paper=True)


def _render(
    rng: np.random.Generator, text: str | None, style: str | None, *, extra_fonts: bool = False
) -> _Plate:
    if style is None:
        style = STYLES[rng.choice(len(STYLES), p=_STYLE_WEIGHTS / _STYLE_WEIGHTS.sum())]
    if style not in STYLES:
        raise ValueError(f"unknown plate style {style!r}; choose one of {', '.join(STYLES)}")
    if text is None:
        text = random_text(rng, "us" if style.startswith("us") else style)
    text = text.upper()
    if not _label(text):
        raise ValueError(f"plate text {text!r} has no A-Z0-9 characters")
    narrow = _PLATE_FONTS[:6] if len(_PLATE_FONTS) > 6 else _PLATE_FONTS
    extra = _EXTRA_PLATE_FONTS if extra_fonts else ()
    if style.startswith("us"):
        plate = _render_us(rng, text, style, _PLATE_FONTS + extra)
    elif style.startswith("eu"):
        plate = _render_eu(rng, text, style, narrow + extra)
    elif style.startswith("br"):
        plate = _render_br(rng, text, style, narrow + extra)
    else:
        plate = _render_paper(rng, text)
    if style.startswith("us") and rng.random() < 0.4:
        image, dx, dy = _draw_frame(rng, plate.image)
        plate = _Plate(
            image,
            plate.text,
            tuple((a + dx, b + dx) for a, b in plate.char_spans),
            (plate.text_band[0] + dy, plate.text_band[1] + dy),
            plate.paper,
        )
    return plate


def render_plate_clean(
    rng: np.random.Generator, text: str | None = None, style: str | None = None
) -> tuple[np.ndarray, str]:
    """A clean front-on plate (BGR uint8) and its label (A-Z0-9 only)."""
    plate = _render(rng, text, style)
    return plate.image, plate.text


# --------------------------------------------------------------------------- camera


def _surround(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    pool = _surround_pool()
    if pool and rng.random() < 0.7:
        src = pool[rng.integers(len(pool))]
        return cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR)
    base = rng.integers(0, 256, 3).astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    img += rng.normal(0, rng.uniform(2, 20), (h, w, 1)).astype(np.float32)
    if rng.random() < 0.5:  # grille-like horizontal bars
        for y in range(0, h, int(rng.integers(4, 16))):
            cv2.line(img, (0, y), (w, y), (base * 0.4).tolist(), int(rng.integers(1, 4)))
    return np.clip(img, 0, 255).astype(np.uint8)


def _geometry(rng: np.random.Generator, image: np.ndarray, tight_side: str | None) -> np.ndarray:
    """Perspective view of the plate inside its surroundings, cropped with random margins."""
    h, w = image.shape[:2]
    pad_x, pad_y = int(w * 0.4), int(h * 0.6)
    canvas = _surround(rng, h + 2 * pad_y, w + 2 * pad_x)
    canvas[pad_y : pad_y + h, pad_x : pad_x + w] = image
    # output plate width: small plates are the common case on a pole camera
    out_w = float(np.exp(rng.uniform(np.log(48), np.log(260))))
    s = out_w / w
    # detector boxes are mostly tight; some are loose
    mx = [
        rng.uniform(-0.03, 0.12) if rng.random() < 0.85 else rng.uniform(0.12, 0.3)
        for _ in range(2)
    ]
    my = [
        rng.uniform(-0.03, 0.18) if rng.random() < 0.85 else rng.uniform(0.18, 0.45)
        for _ in range(2)
    ]
    if tight_side == "left":
        mx[0] = rng.uniform(-0.01, 0.01)
    elif tight_side == "right":
        mx[1] = rng.uniform(-0.01, 0.01)
    pw, ph = w * s, h * s
    # plate corners in the output: a rotated, skewed quad inside the margins
    ang = np.deg2rad(rng.normal(0, 3.5))
    yaw = rng.uniform(-0.18, 0.18)  # one side taller than the other: the view from the side
    jit = rng.uniform(-0.04, 0.04, (4, 2)) * [pw, ph]
    quad = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    quad[:, 1] += np.array([1, -1, 1, -1], np.float32) * yaw * ph * 0.5
    quad = quad + jit.astype(np.float32)
    c, sn = np.cos(ang), np.sin(ang)
    centre = quad.mean(axis=0)
    quad = (quad - centre) @ np.array([[c, sn], [-sn, c]], np.float32) + centre
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    qw, qh = x1 - x0, y1 - y0
    quad -= [x0 - mx[0] * qw, y0 - my[0] * qh]
    out_size = (max(8, int(qw * (1 + mx[0] + mx[1]))), max(6, int(qh * (1 + my[0] + my[1]))))
    src = np.array(
        [[pad_x, pad_y], [pad_x + w, pad_y], [pad_x + w, pad_y + h], [pad_x, pad_y + h]], np.float32
    )
    if s < 0.8:  # shrink first so the warp does not alias
        canvas = cv2.resize(canvas, None, fx=s * 1.25, fy=s * 1.25, interpolation=cv2.INTER_AREA)
        src *= s * 1.25
    m = cv2.getPerspectiveTransform(src, quad.astype(np.float32))
    return cv2.warpPerspective(
        canvas, m, out_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def _photometric(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    f: np.ndarray = img.astype(np.float32)  # float64 after some of the steps below
    h, w = f.shape[:2]
    r = rng.random()
    if r < 0.15:  # IR: near-monochrome, retroreflective plate glows, high contrast
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
        g = (g - g.mean()) * rng.uniform(1.3, 2.5) + rng.uniform(110, 170)
        f = np.repeat(g[:, :, None], 3, axis=2)
        f = f * (1 + rng.uniform(-0.04, 0.04, 3))
    elif r < 0.3:  # low light: dark, yellowish street lighting
        f = 255 * (f / 255) ** rng.uniform(1.2, 2.2) * rng.uniform(0.4, 0.8)
        f *= np.array([rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.0), 1.0], np.float32)
    else:  # daylight: exposure, contrast, white balance
        f = (f - 128) * rng.uniform(0.6, 1.3) + 128 + rng.uniform(-40, 40)
        f *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
    if rng.random() < 0.15:  # glare: a bright soft ellipse
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        sx, sy = rng.uniform(0.1, 0.5) * w, rng.uniform(0.2, 0.8) * h
        f += (
            rng.uniform(80, 220)
            * np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))[:, :, None]
        )
    if rng.random() < 0.2:  # shadow edge across the plate
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        d = (xx - w / 2) * np.cos(a) + (yy - h / 2) * np.sin(a) - rng.uniform(-0.3, 0.3) * w
        f *= (1 - rng.uniform(0.3, 0.6) * (d > 0))[:, :, None]
    if rng.random() < 0.15:  # dirt: soft dark-brown blotches
        layer = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(2, 12))):
            cv2.circle(
                layer,
                (int(rng.integers(w)), int(rng.integers(h))),
                int(rng.integers(1, max(2, h // 4))),
                1.0,
                -1,
            )
        layer = cv2.GaussianBlur(layer, (0, 0), max(1.0, h / 30))[:, :, None] * rng.uniform(
            0.2, 0.6
        )
        f = f * (1 - layer) + np.array([30, 50, 70], np.float32) * layer
    if rng.random() < 0.08:  # rain streaks
        layer = np.zeros((h, w), np.float32)
        ang = rng.uniform(-0.4, 0.4)
        for _ in range(int(rng.integers(10, 40))):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            ln = rng.uniform(0.1, 0.4) * h
            cv2.line(layer, (int(x), int(y)), (int(x + ln * ang), int(y + ln)), 1.0, 1)
        f += layer[:, :, None] * rng.uniform(40, 100)
    return np.clip(f, 0, 255).astype(np.uint8)


def _blur_noise_jpeg(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    h = img.shape[0]
    r = rng.random()
    if r < 0.25:  # motion blur along a random direction
        k = int(rng.integers(3, max(4, min(9, h // 7))))
        kernel: np.ndarray = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        img = cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))
    elif r < 0.45:  # defocus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, max(0.5, h / 60)))
    if rng.random() < 0.5:
        sigma = rng.uniform(1, 14)
        img = np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(
            np.uint8
        )
    if rng.random() < 0.2:  # low resolution: down and back up
        fs = rng.uniform(0.5, 0.85)
        small = cv2.resize(img, None, fx=fs, fy=fs, interpolation=cv2.INTER_AREA)
        if min(small.shape[:2]) >= 4:
            img = cv2.resize(small, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.7:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 95))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            img = decoded
    return img


def _augment(
    rng: np.random.Generator, image: np.ndarray, tight_side: str | None = None
) -> np.ndarray:
    img = _geometry(rng, image, tight_side)
    img = _photometric(rng, img)
    return _blur_noise_jpeg(rng, img)


def augment_crop(rng: np.random.Generator, image_bgr: np.ndarray) -> np.ndarray:
    """Camera-like degradation of a plate crop (BGR uint8 in, BGR uint8 out, new array)."""
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError("augment_crop expects an H x W x 3 uint8 BGR image")
    return _augment(rng, image_bgr)


# --------------------------------------------------------------------------- partial plates


def _cut_off(rng: np.random.Generator, plate: _Plate) -> tuple[np.ndarray, str, str]:
    """Cut the plate at one side through or past 1-2 characters; label the visible rest."""
    spans, text = plate.char_spans, plate.text
    k = int(rng.integers(1, min(3, len(text))))
    if rng.random() < 0.5:  # left side gone
        last = spans[k - 1]
        x = int(rng.uniform(last[0] + 0.5 * (last[1] - last[0]), spans[k][0]))
        return plate.image[:, x:].copy(), text[k:], "left"
    first = spans[len(text) - k]
    x = int(rng.uniform(spans[len(text) - k - 1][1], first[1] - 0.5 * (first[1] - first[0])))
    return plate.image[:, : max(x, 1)].copy(), text[: len(text) - k], "right"


def _occlude(rng: np.random.Generator, plate: _Plate) -> tuple[np.ndarray, str]:
    """Hide 1-2 whole characters behind a bar (tow hitch, bike rack, hand); drop them."""
    spans, text = plate.char_spans, plate.text
    n = 1 if rng.random() < 0.7 or len(text) < 4 else 2
    i = int(rng.integers(0, len(text) - n + 1))
    x0 = spans[i][0] - int(rng.integers(1, 4))
    x1 = spans[i + n - 1][1] + int(rng.integers(1, 4))
    img = plate.image.copy()
    h = img.shape[0]
    y0 = int(rng.uniform(0, plate.text_band[0]))
    y1 = int(rng.uniform(plate.text_band[1], h))
    col = tuple(int(c) for c in rng.integers(0, 120, 3))
    cv2.rectangle(img, (x0, y0), (x1, y1), col, -1)
    return img, text[:i] + text[i + n :]


def render_plate(rng: np.random.Generator) -> tuple[np.ndarray, str, str]:
    """A training crop, its label (visible characters) and status (full, partial, paper)."""
    plate = _render(rng, None, None, extra_fonts=True)
    status = "paper" if plate.paper else "full"
    r = rng.random()
    if len(plate.text) >= 3 and r < 0.07:
        image, text, side = _cut_off(rng, plate)
        return _augment(rng, image, tight_side=side), text, "partial"
    if len(plate.text) >= 3 and r < 0.11:
        image, text = _occlude(rng, plate)
        return _augment(rng, image), text, "partial"
    return _augment(rng, plate.image), plate.text, status


def render_non_plate(rng: np.random.Generator) -> np.ndarray:
    """A crop with no plate in it: car body, grille, artwork fragment or texture."""
    w = int(np.exp(rng.uniform(np.log(40), np.log(240))))
    h = max(8, int(w * rng.uniform(0.25, 0.7)))
    r = rng.random()
    designs = _design_pool()
    if r < 0.2 and designs:  # plate artwork without characters (the washed middle band)
        d = designs[rng.integers(len(designs))]
        y = int(rng.integers(30, 60))
        patch = d[y : y + 36, int(rng.integers(0, 60)) :]
        img = cv2.resize(patch, (w, h))
    else:
        big = _surround(rng, 192, 256)
        pw = int(rng.integers(40, 200))
        ph = max(8, int(pw * h / w))
        x, y = int(rng.integers(0, 256 - pw + 1)), int(rng.integers(0, max(1, 192 - ph + 1)))
        img = cv2.resize(big[y : y + ph, x : x + pw], (w, h))
    img = _photometric(rng, img)
    return _blur_noise_jpeg(rng, img)
