"""Head-stage augmentations, soft CLIP targets, and the hash splits."""

from __future__ import annotations

import numpy as np
import torch

from engine.models.clip import ClipLoss
from training import data as D
from training.augment import augment_lamost, rv_shift, shift_pixels
from training.losses import soft_targets


def test_one_model_pixel_is_about_69_kms():
    assert abs(float(shift_pixels(torch.tensor(69.0265))) - 1.0) < 1e-3


def test_rv_shift_moves_a_line_and_masks_the_edge():
    flux = torch.ones(1, 100, dtype=torch.float64)
    flux[0, 50] = 0.0
    weight = torch.ones_like(flux)
    f, w = rv_shift(flux, weight, torch.tensor([3.0], dtype=torch.float64))
    assert int(f[0].argmin()) == 53          # redshift: towards longer wavelength
    assert w[0, :3].sum() == 0 and w[0, 3:].min() == 1


def test_augment_moves_the_rv_label_with_the_shift():
    g = torch.Generator().manual_seed(0)
    flux = torch.ones(64, 1462) + 0.01 * torch.randn(64, 1462, generator=g)
    labels = torch.zeros(64, 4, dtype=torch.float64)
    f, w, y = augment_lamost(flux, torch.ones_like(flux), labels, ("teff", "logg", "feh", "rv"),
                             g, p=1.0)
    assert y[:, 3].abs().max() <= 100 and y[:, 3].abs().min() > 0
    assert torch.equal(y[:, :3], labels[:, :3])   # the other labels are untouched
    assert (w == 0).any() and f.shape == flux.shape


def test_soft_targets_treat_label_twins_as_positives():
    lam = np.array([[5000.0, 4.5, 0.0], [5000.0, 4.5, 0.0], [7000.0, 2.0, -1.0]])
    t = soft_targets(lam, lam.copy(), width=1.0).numpy()
    assert np.allclose(np.diag(t), 1) and t[0, 1] > 0.99 and t[0, 2] < 1e-6
    a = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    hard = ClipLoss()(a, a)["loss"]
    same = ClipLoss()(a, a, torch.eye(3))["loss"]
    assert torch.isclose(hard, same)          # identity targets = CLIP's hard targets


def test_splits_are_disjoint_fixed_and_sized():
    ids = [str(900000000 + i) for i in range(20000)]
    split = [D.lamost_split(i) for i in ids]
    share = {k: split.count(k) / len(ids) for k in ("train", "val", "test")}
    assert abs(share["test"] - 0.2) < 0.02 and abs(share["val"] - 0.1) < 0.02
    assert all((s == "test") == D.is_lamost_holdout(i) for s, i in zip(split, ids, strict=True))
    from engine.readers import is_xp_test_split

    apogee = [f"2M{i:08d}+1234567" for i in range(5000)]
    assert all((D.xp_split(a) == "test") == is_xp_test_split(a) for a in apogee)
    assert D.xp_split(b" 2M00000001+1234567 ") == D.xp_split("2M00000001+1234567")
