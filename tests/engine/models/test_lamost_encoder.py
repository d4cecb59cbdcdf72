import pytest
import torch

from engine.models.config import TransformerConfig
from engine.models.lamost_encoder import PatchTransformerEncoder, n_patches, patchify

CFG = TransformerConfig(width=16, depth=1, heads=2, mlp_ratio=2.0)


def test_patches_overlap_and_cover_every_pixel():
    assert n_patches(CFG) == 146  # ceil((1462 - 20) / 10) + 1
    x = torch.arange(1462, dtype=torch.float32)[None]
    p = patchify(x, CFG)
    assert p.shape == (1, 146, 20)
    assert torch.equal(p[0, 1, :10], p[0, 0, 10:])        # stride 10: half overlap
    assert p[0, -1, -1] == 1461                             # red end padded by repetition


def test_shapes(lamost_batch):
    enc = PatchTransformerEncoder(CFG)
    h = enc.tokens(*lamost_batch)
    assert h.shape == (4, 147, 16)                          # scale token + 146 patches
    assert enc(*lamost_batch).shape == (4, 16)


def test_loss_counts_masked_patches_only(lamost_batch):
    torch.manual_seed(0)
    enc = PatchTransformerEncoder(CFG)
    flux, weight, scale = lamost_batch
    fixed = torch.randn(4, 147, 16)
    enc.tokens = lambda *a, **k: fixed          # predictions no longer depend on the input
    mask = torch.zeros(4, 146, dtype=torch.bool)
    mask[:, 50] = True                           # only patch 50 (pixels 500..519) is hidden
    base = enc.masked_patch_loss(flux, weight, scale, mask)
    outside = flux.clone()
    outside[:, 100:480] += 5.0                   # pixels of visible patches only
    assert torch.allclose(enc.masked_patch_loss(outside, weight, scale, mask), base)
    inside = flux.clone()
    inside[:, 505] += 5.0
    assert not torch.allclose(enc.masked_patch_loss(inside, weight, scale, mask), base)


def test_random_mask_ratio():
    enc = PatchTransformerEncoder(CFG)
    m = enc.random_patch_mask(3, torch.Generator().manual_seed(0))
    assert m.shape == (3, 146)
    assert (m.sum(1) == round(0.3 * 146)).all()


def test_gradient_reaches_every_parameter(lamost_batch):
    enc = PatchTransformerEncoder(CFG)
    enc.pretrain_loss(*lamost_batch, generator=torch.Generator().manual_seed(1)).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_pixels_do_not_leak(lamost_batch):
    enc = PatchTransformerEncoder(CFG).eval()
    flux, weight, scale = lamost_batch
    changed = flux.clone()
    changed[:, :7] = 1e6                         # weight 0 there: must not change the output
    assert torch.allclose(enc(flux, weight, scale), enc(changed, weight, scale))


@pytest.mark.parametrize("option", [{"scale_token": False}, {"pool": "scale"}])
def test_options_change_output(lamost_batch, option):
    torch.manual_seed(0)
    a = PatchTransformerEncoder(CFG).eval()
    torch.manual_seed(0)
    b = PatchTransformerEncoder(TransformerConfig(**{**CFG.__dict__, **option})).eval()
    assert not torch.allclose(a(*lamost_batch), b(*lamost_batch))
