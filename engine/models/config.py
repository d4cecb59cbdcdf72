"""Model and training configuration: frozen dataclasses loaded from small JSON files.

The JSON files live in training/configs/ (small for this CPU, paper for a GPU); the resolved
config is also stored inside every bundle so the weights can always be rebuilt. Every field
changes behaviour somewhere: tests/engine/models/test_specclip.py
(test_every_model_option_changes_behaviour) checks the model options that act on their own,
tests/engine/models/test_ensemble.py and test_xp_params.py those that need another key set
(heads.lamost_members, lamost_runs_labels, xp_params_members), and
tests/training/test_config_cli.py that configs load and unknown keys are refused. `preprocess`
is part of the config so that a preprocessing change changes the bundle's version id.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any


@dataclass(frozen=True)
class TransformerConfig:
    """A pre-LayerNorm transformer over overlapping patches of a 1-D spectrum."""

    n_pixels: int = 1462          # input length (LAMOST model grid 1462, XP 343)
    patch_size: int = 20          # pixels per patch token (SpecCLIP: 20)
    patch_stride: int = 10        # step between patches; < patch_size means overlap (SpecCLIP: 10)
    width: int = 64               # token width (paper: 768)
    depth: int = 2                # transformer blocks (paper: 6)
    heads: int = 4                # attention heads (paper: 6)
    mlp_ratio: float = 4.0        # hidden width of each block's MLP / width
    dropout: float = 0.0          # dropout in attention and MLP
    scale_token: bool = True      # prepend a token carrying log10 of the spectrum's flux scale
    mask_ratio: float = 0.3       # share of patches hidden during masked-patch pretraining
    pool: str = "mean"            # "mean" over patch tokens or "scale" (the scale token's output)


@dataclass(frozen=True)
class XpMlpConfig:
    """MLP autoencoder on the 343-sample XP spectrum (SpecCLIP's released XP model)."""

    hidden: tuple[int, ...] = (256, 256)   # encoder hidden widths (decoder mirrors them)
    latent: int = 64                        # encoder output width
    mean_std_inputs: bool = True            # append each spectrum's own mean/std (and scale)
    input_noise: float = 0.0                # input noise (denoising AE), standardised units


@dataclass(frozen=True)
class XpEncoderConfig:
    """Which XP encoder to build; the other one stays available by flipping `kind`."""

    kind: str = "mlp"                                   # "mlp" or "transformer"
    mlp: XpMlpConfig = field(default_factory=XpMlpConfig)  # used when kind == "mlp"
    transformer: TransformerConfig = field(               # used when kind == "transformer"
        default_factory=lambda: TransformerConfig(n_pixels=343))


@dataclass(frozen=True)
class AlignConfig:
    """CLIP stage: split projections, contrastive loss and decoders."""

    features: str = "finetuned"       # projections read: "pretrained" encoders (SpecCLIP order
    #                                   pretrain -> align -> heads) or "finetuned" = the heads'
    #                                   label-tuned encoder copies (pretrain -> heads -> align)
    shared_dim: int = 32              # CLIP space (L2-normalised), the same for both instruments
    private_dim: int = 16             # instrument-only part of the split embedding (0 = no split)
    proj_hidden: int = 128            # hidden width of the projection MLPs
    decoder_hidden: tuple[int, ...] = (256, 512)  # hidden widths of every decoder MLP
    logit_scale_init: float = 2.659   # log(1/0.07), CLIP's initial temperature
    learnable_logit_scale: bool = True  # train the temperature (it then receives a gradient)
    tune_encoders: bool = False       # False: encoders frozen; True: tuned at encoder_lr_scale
    encoder_lr_scale: float = 0.1     # learning-rate factor for encoders when tuned
    recon_weight: float = 1.0         # weight of own-spectrum reconstruction (shared+private)
    translation_weight: float = 1.0   # weight of cross-instrument translation (shared only)
    soft_target_width: float = 0.0    # > 0: CLIP targets exp(-d^2 / 2 w^2) over the label
    #                                   distance d of batch stars (standardised label units,
    #                                   training/data.py); 0: hard identity targets
    unpaired_recon: bool = False      # also train projections + own decoders on a batch of
    #                                   random spectra of each survey (every spectrum, not
    #                                   only label-matched partners)


@dataclass(frozen=True)
class HeadsConfig:
    """Parameter heads with a Gaussian uncertainty per star."""

    hidden: tuple[int, ...] = (128, 128)  # MLP hidden widths
    finetune_encoder: bool = True   # heads own a copy of the encoder, fine-tuned on labels
    log_teff: bool = True           # predict log10(Teff) internally (errors scale with Teff)
    min_sigma: float = 1e-3         # floor on the predicted sigma (standardised units)
    stack_labels: tuple[str, ...] = ()  # LAMOST labels refined by a linear stack on the head's
    #                                 predictions + PCA of the input (engine/models/stacking.py)
    stack_components: int = 100     # PCA components of the stack's input spectrum
    rv_templates: int = 0           # > 0: LAMOST rv by a chi2 fit against this many rest-frame
    #                                 templates (engine/rv.py) instead of the head's rv output
    lamost_members: int = 1         # > 1: LAMOST parameters averaged over this many runs of
    #                                 seeds seed, seed + 1, ... (engine/models/ensemble.py)
    lamost_params_steps: int = 0    # > 0: the LAMOST parameters come from lamost_members
    #                                 paths of their own (seeds seed, seed + 1, ...: LAMOST
    #                                 pretraining, a head of this many steps, the stack); the
    #                                 main run's LAMOST path, which the alignment reads, is
    #                                 left out of their average. 0: it is the first of them
    lamost_runs_labels: tuple[str, ...] = ()  # with lamost_params_steps > 0: these labels
    #                                 come instead from the main run and lamost_members - 1
    #                                 more whole runs (as with lamost_params_steps = 0), which
    #                                 the bundle then holds too (engine/models/ensemble.py)
    xp_params_hidden: tuple[int, ...] = ()  # non-empty: the XP parameters come from a path
    #                                 of their own, an XP MLP encoder of these hidden widths
    #                                 pretrained and fine-tuned with its own XP head (XP
    #                                 stages and budgets of the run); the main run's XP path,
    #                                 which the alignment reads, then gives none
    xp_params_members: int = 1      # > 1 (with xp_params_hidden): the XP parameters are the
    #                                 average of this many such paths, seeds seed, seed + 1,
    #                                 ... (engine/models/xp_params.py)


@dataclass(frozen=True)
class PreprocessConfig:
    """How records become model inputs (engine/preprocess.py). Stored in the bundle's config,
    so a different preprocessing gives a different version id and the indexer re-embeds."""

    lamost_continuum: str = "own"   # "own": our continuum fit for every file layout (one input
    #                                 whatever the layout); "pipeline": the pipeline's
    #                                 normalised flux where the file has it (DR1, DR8+)


@dataclass(frozen=True)
class TrainConfig:
    """Budgets and optimiser settings for the three stages."""

    seed: int = 0                   # seeds python/numpy/torch
    batch_size: int = 64            # batch size of stages that run the LAMOST transformer
    xp_batch_size: int = 256        # batch size of XP-only stages and of CLIP pairs
    lr: float = 1e-3                # AdamW peak learning rate (cosine decay, short warm-up)
    weight_decay: float = 0.01      # AdamW weight decay
    pretrain_lamost_steps: int = 600  # masked-patch steps for the LAMOST encoder
    pretrain_xp_steps: int = 600    # autoencoder steps for the XP encoder
    align_steps: int = 600          # CLIP + decoder steps
    heads_lamost_steps: int = 600   # labelled fine-tuning steps, LAMOST head
    heads_xp_steps: int = 1500      # labelled fine-tuning steps, XP head
    heads_xp_ema: float = 0.0       # > 0: the XP head's checks score and keep this moving
    #                                 average of its weights (training/weight_average.py)
    pair_neighbours: int = 8        # label-space pairs: sample among this many nearest XP stars
    max_xp_train: int = 0           # cap on XP library train rows (0 = all)
    threads: int = 2                # torch threads
    augment: bool = True            # LAMOST head batches: RV shifts (label moved with them),
    #                                 continuum tilts and masked pixel runs (training/augment.py)
    eval_every: int = 100           # head stages: validation loss every this many steps; the
    #                                 best state on validation is kept (early stopping)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a SpecCLIP model and retrain it."""

    name: str = "small"
    lamost: TransformerConfig = field(default_factory=TransformerConfig)
    xp: XpEncoderConfig = field(default_factory=XpEncoderConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Build a (nested) frozen dataclass from a dict, refusing unknown keys."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known) - {"comment", "_comment"}
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
    kwargs = {}
    for name, value in data.items():
        if name not in known:
            continue
        default = getattr(cls(), name)
        if is_dataclass(default):
            kwargs[name] = _build(type(default), value)
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    cfg = _build(ModelConfig, data)
    if cfg.preprocess.lamost_continuum not in ("own", "pipeline"):
        raise ValueError("preprocess.lamost_continuum must be 'own' or 'pipeline', got "
                         f"{cfg.preprocess.lamost_continuum!r}")
    if not 0.0 <= cfg.train.heads_xp_ema < 1.0:
        raise ValueError("train.heads_xp_ema must be 0 (off) or a decay in (0, 1), got "
                         f"{cfg.train.heads_xp_ema!r}")
    if cfg.heads.xp_params_hidden and cfg.xp.kind != "mlp":
        raise ValueError("heads.xp_params_hidden needs xp.kind='mlp' (it sets the widths of "
                         f"an XP MLP encoder), got xp.kind={cfg.xp.kind!r}")
    if cfg.heads.xp_params_members < 1:
        raise ValueError("heads.xp_params_members must be at least 1, got "
                         f"{cfg.heads.xp_params_members!r}")
    if cfg.heads.xp_params_members > 1 and not cfg.heads.xp_params_hidden:
        raise ValueError("heads.xp_params_members > 1 needs heads.xp_params_hidden (it averages "
                         "XP parameter paths)")
    if cfg.heads.lamost_params_steps < 0:
        raise ValueError("heads.lamost_params_steps must be 0 (off) or a number of steps, got "
                         f"{cfg.heads.lamost_params_steps!r}")
    if cfg.heads.lamost_runs_labels and cfg.heads.lamost_params_steps == 0:
        raise ValueError("heads.lamost_runs_labels needs heads.lamost_params_steps > 0 (it "
                         "says which labels come from whole runs instead of those paths)")
    return cfg


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(cfg)))
