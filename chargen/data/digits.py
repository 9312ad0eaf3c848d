"""scikit-learn's 8 x 8 handwritten digits as sequences of 64 grey levels: the data file, its fixed split, the fixed pixel order.

The 1,797 images (UCI's optical digits, as scikit-learn ships them in ``digits.csv.gz``: 64
pixels, each a grey level 0-16, then the label) are the closest offline analogue of
pixel-MNIST. The file is read straight from scikit-learn's installed package (importing
scikit-learn would also pull in SciPy, for nothing); the ``study`` extra installs it. Its
parsed contents are pinned by a digest, so the split below is the same on every machine.

- ``split``: a fixed stratified train/validation/test split (1,197 / 300 / 300) from a fixed seed.
- ``permutation``: the fixed pixel order of the permuted task, from a fixed seed.
- ``sequences``: images -> time-major token ids ``(64, N)``, read in raster order or in that order.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from chargen.errors import CorpusError

EXTRA = "study"  # pyproject's extra that installs scikit-learn
IMAGES, PIXELS, LEVELS, CLASSES = 1797, 64, 17, 10
# A grey level as one token of a base-17 alphabet, so that a checkpoint's vocabulary reads like the data.
GREY_LEVELS = "0123456789abcdefg"
# sha256 of the parsed file: the (1797, 65) uint8 array of pixels then label, row by row.
DATA_SHA256 = "68aea062d35a127749050fa0e52dca09d6569ac08092c925610e0954e172dde2"
SPLIT_SEED = 24  # issue 24
PERIOD = 6  # of every 6 images in class order, 1 goes to test, 1 to validation, 4 to training
PERMUTATION_SEED = 1_000_003


def data_file() -> Path:
    """Where scikit-learn's ``digits.csv.gz`` is installed; a CorpusError naming the extra when it is not."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    found = "" if spec is None else " (scikit-learn is installed but has no datasets/data/digits.csv.gz)"
    raise CorpusError(f"the digits task reads scikit-learn's 8x8 digits{found}: install the {EXTRA!r} extra "
                      f"(pip install 'chargen[{EXTRA}]')")


@dataclass(frozen=True)
class Digits:
    """All images in the file's order: ``pixels (1797, 64)`` grey levels 0-16 and ``labels (1797,)`` 0-9."""

    pixels: Tensor
    labels: Tensor
    digest: str


def parse(text: str, source: str = "digits.csv.gz") -> Tensor:
    """The file's rows as a ``(rows, 65)`` uint8 tensor, every value checked (integers, grey levels, labels)."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            raise CorpusError(f"{source}:{number}: not a row of numbers") from None
        if len(values) != PIXELS + 1 or any(v != int(v) or not 0 <= v < LEVELS for v in values):
            raise CorpusError(f"{source}:{number}: not 64 grey levels 0-16 and a label")
        rows.append([int(v) for v in values])
    table = torch.tensor(rows, dtype=torch.uint8).view(-1, PIXELS + 1)
    if bool((table[:, -1] >= CLASSES).any()):
        raise CorpusError(f"{source}: a label outside 0-9")
    return table


def digest(table: Tensor) -> str:
    return hashlib.sha256(table.contiguous().numpy().tobytes()).hexdigest()


@lru_cache(maxsize=1)
def load_digits() -> Digits:
    """The 1,797 images, read once per process and checked against the pinned digest."""
    path = data_file()
    try:
        with gzip.open(path, "rt", encoding="ascii") as f:
            text = f.read()
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise CorpusError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    table = parse(text, str(path))
    found = digest(table)
    if found != DATA_SHA256:
        raise CorpusError(f"{path} holds {len(table):,} images with sha256 {found[:12]}..., not the 1,797 digits "
                          f"this chargen splits (sha256 {DATA_SHA256[:12]}...)")
    return Digits(table[:, :PIXELS].long(), table[:, PIXELS].long(), found)


def split(labels: Tensor, seed: int = SPLIT_SEED) -> dict[str, Tensor]:
    """Stratified ``train``/``val``/``test`` indices (each sorted), the same for the same labels and seed.

    The images are shuffled, stably sorted by label, and dealt out along that class order: position
    ``j`` goes to test when ``j % 6 == 0``, to validation when ``j % 6 == 1``, else to training. So
    validation and test each hold a sixth of every class (within one image), and 1,797 images give
    1,197 / 300 / 300.
    """
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(labels), generator=generator)
    order = shuffled[torch.sort(labels[shuffled], stable=True).indices]  # class by class, shuffled within
    place = torch.arange(len(labels)) % PERIOD
    return {"train": order[place >= 2].sort().values, "val": order[place == 1].sort().values,
            "test": order[place == 0].sort().values}


def permutation(seed: int = PERMUTATION_SEED) -> Tensor:
    """The permuted task's pixel order: step ``t`` reads pixel ``permutation()[t]`` (raster index)."""
    return torch.randperm(PIXELS, generator=torch.Generator().manual_seed(seed))


def check_permutation(order: object) -> Tensor:
    """A saved pixel order as a tensor, or a CorpusError when it is not an order of the 64 pixels."""
    if not isinstance(order, list) or sorted(order) != list(range(PIXELS)):
        raise CorpusError(f"the saved pixel order is not a permutation of 0-{PIXELS - 1}")
    return torch.tensor(order, dtype=torch.long)


def sequences(pixels: Tensor, order: Tensor | None = None) -> Tensor:
    """Images ``(N, 64)`` -> time-major token ids ``(64, N)``: raster order, or pixel ``order[t]`` at step ``t``."""
    if order is not None:
        pixels = pixels[:, order]
    return pixels.t().contiguous()


__all__ = [
    "CLASSES", "DATA_SHA256", "EXTRA", "GREY_LEVELS", "IMAGES", "LEVELS", "PERMUTATION_SEED", "PIXELS", "SPLIT_SEED",
    "Digits", "check_permutation", "data_file", "load_digits", "parse", "permutation", "sequences", "split",
]
