"""Payload keys of a spectrum point in the store, and which of them get payload indexes.

One point per spectrum. Named vectors: `shared` (the CLIP space both instruments share),
the instrument's own encoder embedding under its survey name (`lamost` or `gaia_xp`), and,
when the bundle has spectral bases, `<survey>_spectrum` (PCA of the normalised spectrum).
The payload keeps the original identifiers and units (degrees, Kelvin, dex); models never
see these.
"""

from __future__ import annotations

from engine.records import LABEL_NAMES, SURVEY_LAMOST, SURVEY_XP

VECTOR_SHARED = "shared"
VECTOR_OWN = {SURVEY_LAMOST: "lamost", SURVEY_XP: "gaia_xp"}
# PCA of the normalised spectrum (engine/spectral.py): repeat observations and spectral twins
VECTOR_SPECTRUM = {SURVEY_LAMOST: "lamost_spectrum", SURVEY_XP: "gaia_xp_spectrum"}

SURVEY = "survey"
OBJECT_ID = "object_id"
GAIA_SOURCE_ID = "gaia_source_id"
RA, DEC = "ra", "dec"
# The sky position as a Qdrant geo point {"lon": RA wrapped to [-180, 180), "lat": Dec}, so
# cone searches use a geo payload index (engine/positions.py).
SKY = "sky"
DATA_RELEASE = "data_release"
SNR = "snr"
OBJ_CLASS = "obj_class"
SUBCLASS = "subclass"
Z = "z"
LABEL_SOURCE = "label_source"
SOURCE_PATH = "source_path"
SOURCE_INDEX = "source_index"
SOURCE_ROOT = "source_root"          # the source spec (absolute path) a point was synced from
CONTENT_HASH = "content_hash"
MODEL_VERSION = "model_version"
CONTINUUM = "continuum"                # LAMOST: normalisation the model saw, "own" or "pipeline"
# Where the store keeps this point's spectrum (engine/spectrum_archive.py): the archive file
# (relative to an embedded store's folder, absolute for a server's archive) and its row.
SPECTRUM_FILE = "spectrum_file"
SPECTRUM_ROW = "spectrum_row"

# Anomaly scores (indexer/scoring.py; README "Outliers"). Own-survey scores:
ANOMALY_RECON = "anomaly_recon"        # reconstruction chi^2 vs own noise + look-alikes' error
ANOMALY_PEAK = "anomaly_peak"          # the worst single bin of that chi^2 (spikes, dead pixels)
ANOMALY_FEATURES = "anomaly_features"  # expected features missing, in noise units
ANOMALY_KNN = "anomaly_knn"            # local isolation (k-NN distance over its neighbours')
KNN_DISTANCE = "knn_distance"          # cosine distance to the 10th same-survey neighbour
# LAMOST: how much better a star template fits at a galaxy's redshift than at a star's
# velocity, in noise units (engine/redshift.py), and that redshift
ANOMALY_REDSHIFT = "anomaly_redshift"
ANOMALY_REDSHIFT_Z = "anomaly_redshift_z"
# ANOMALY: Fisher's combination -sum(log(1 - p)) of the own-survey scores' percentiles
# within the survey (from the distribution stored at the last full scoring pass); which
# scores take part, per survey: indexer/scoring.py ANOMALY_PARTS
ANOMALY = "anomaly"
# only for stars with both spectra, ranked only among them; never part of ANOMALY
ANOMALY_TRANSLATION = "anomaly_translation"
ANOMALY_SCORES = (ANOMALY, ANOMALY_KNN, ANOMALY_RECON, ANOMALY_PEAK, ANOMALY_FEATURES,
                  ANOMALY_REDSHIFT, ANOMALY_TRANSLATION)
SCORES_PENDING = "scores_pending"      # True until the neighbour scores are written
# never stored: readers add it to a hit whose neighbour-score refresh a sync deferred
# (engine/stale_scores.py)
SCORES_STALE = "scores_stale"
# Out of distribution: far from the parameter heads' training data, or not a star
OOD = "ood"
OOD_DISTANCE = "ood_distance"
OOD_SCORE = "ood_score"                # Fisher combination of the OOD signals (engine/reference.py)
OOD_REASON = "ood_reason"
# Data quality, separate from oddity: low SNR or a mostly masked window
LOW_QUALITY = "low_quality"
QUALITY_REASON = "quality_reason"
SNR_BANDS = "snr_bands"

def label_key(name: str) -> str:
    return f"label_{name}"


def pred_key(name: str) -> str:
    return f"pred_{name}"


def sigma_key(name: str) -> str:
    return f"pred_{name}_sigma"


# Payload indexes on every field used to filter or order.
PAYLOAD_INDEXES: dict[str, str] = {
    SURVEY: "keyword",
    OBJECT_ID: "keyword",
    GAIA_SOURCE_ID: "integer",
    RA: "float",
    DEC: "float",
    SKY: "geo",
    DATA_RELEASE: "keyword",
    SNR: "float",
    OBJ_CLASS: "keyword",
    SUBCLASS: "keyword",
    LABEL_SOURCE: "keyword",
    SOURCE_PATH: "keyword",
    SOURCE_ROOT: "keyword",
    CONTENT_HASH: "keyword",
    SPECTRUM_FILE: "keyword",          # a sync that rewrites or deletes points looks up
                                       # who still names their archive files (unindexed:
                                       # a scan, 4-5 s at 1M points)
    **{label_key(n): "float" for n in LABEL_NAMES},
    **{pred_key(n): "float" for n in LABEL_NAMES},
    pred_key("rv"): "float",           # LAMOST radial velocity (km/s): the RV template fit
                                       # (engine/rv.py), the head's without templates
    CONTINUUM: "keyword",
    **{k: "float" for k in ANOMALY_SCORES},
    SCORES_PENDING: "bool",
    OOD: "bool",
    LOW_QUALITY: "bool",
}


# Fields a filter may name besides the indexed ones, with their types: a filter on them scans
# (no payload index), which is fine for small stores and slow for large ones.
UNINDEXED_FILTER_FIELDS: dict[str, str] = {
    **{sigma_key(n): "float" for n in LABEL_NAMES}, sigma_key("rv"): "float",
    Z: "float", KNN_DISTANCE: "float", OOD_SCORE: "float", OOD_DISTANCE: "float",
    ANOMALY_REDSHIFT_Z: "float", MODEL_VERSION: "keyword",
}
