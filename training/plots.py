"""PNG plots written by `specclip evaluate`: predicted vs label, residuals vs SNR, and
translation examples on the real pairs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from engine.grids import lamost_model_wavelength, xp_wavelength_angstrom  # noqa: E402

CREDIT = "LAMOST (Guoshoujing Telescope) public data; ESA Gaia DR3; APOGEE DR17 labels"


def _finish(fig, path: Path, title: str) -> str:
    """Title (with the data credit), save and close one figure; its path as a string."""
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def _pred_vs_label(path: Path, title: str, batch, labels: np.ndarray, names) -> str:
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4))
    for ax, (k, name) in zip(np.atleast_1d(axes), enumerate(names), strict=False):
        ax.scatter(labels[:, k], batch.params[name], s=3, alpha=0.5)
        lo, hi = np.nanpercentile(labels[:, k], [1, 99])
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"label {name}")
        ax.set_ylabel(f"predicted {name}")
    return _finish(fig, path, f"{title}\n{CREDIT}")


def _resid_vs_snr(path: Path, title: str, batch, labels, snr, names) -> str:
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5))
    for ax, (k, name) in zip(np.atleast_1d(axes), enumerate(names), strict=False):
        ax.scatter(snr, batch.params[name] - labels[:, k], s=3, alpha=0.5)
        ax.axhline(0, color="k", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("SNR")
        ax.set_ylabel(f"pred - label {name}")
    return _finish(fig, path, f"{title}\n{CREDIT}")


def _translations(path: Path, pair_lam, pair_lam_b, xp_all, pair_idx) -> str:
    n = max(1, len(pair_idx))
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.4 * n), squeeze=False)
    wl, wx = lamost_model_wavelength(), xp_wavelength_angstrom()
    for row, (li, xi) in enumerate(pair_idx):
        ax = axes[row, 0]
        ax.plot(wx, xp_all.flux[xi], "k", lw=1, label="real XP")
        ax.plot(wx, pair_lam_b.translated[li], "r", lw=1, label="from LAMOST")
        ax.set_ylabel(pair_lam.ids[li], fontsize=7)
        ax.legend(fontsize=6)
        ax = axes[row, 1]
        ax.plot(wl, pair_lam.flux[li], "k", lw=0.5, label="real LAMOST")
        ax.set_title("LAMOST (model input)", fontsize=7)
    return _finish(fig, path, f"LAMOST -> XP translation on real pairs\n{CREDIT}")


def write_plots(folder: Path, lam, lam_b, xp, xp_b, pair_lam, pair_lam_b, xp_all, pair_idx
                ) -> list[str]:
    from engine.models.specclip import LAMOST_LABELS, XP_LABELS

    folder.mkdir(parents=True, exist_ok=True)
    return [
        _pred_vs_label(folder / "lamost_pred_vs_label.png", "LAMOST held-out vs LASP", lam_b,
                       lam.labels, LAMOST_LABELS),
        _pred_vs_label(folder / "xp_pred_vs_label.png", "XP test split vs APOGEE", xp_b,
                       xp.labels, XP_LABELS),
        _resid_vs_snr(folder / "lamost_resid_vs_snr.png", "LAMOST residuals vs SNR(g)", lam_b,
                      lam.labels, lam.snr, LAMOST_LABELS),
        _resid_vs_snr(folder / "xp_resid_vs_snr.png", "XP residuals vs XP SNR", xp_b,
                      xp.labels, xp.snr, XP_LABELS),
        _translations(folder / "translation_pairs.png", pair_lam, pair_lam_b, xp_all, pair_idx),
    ]
