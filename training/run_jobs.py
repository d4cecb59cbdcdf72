"""The independent trainings of one `specclip train`, side by side in worker processes.

A config with a LAMOST ensemble, LAMOST parameter paths or an XP parameter path trains several
runs that share nothing but the data: the main run, K - 1 more whole runs, K LAMOST paths and
the XP paths (training/ensemble_fit.py, training/xp_path_fit.py). Each one seeds itself
(seed_everything and per-stage generators, `train.threads` torch threads), so it gives the
same networks in whichever process and order it runs (the linear stacks' float64 PCA goes
through LAPACK, whose last digits follow the process's BLAS threading). `specclip train
--workers N` runs N of them at a time in spawned processes; with one torch thread each, two
workers on two cores cut the wall time of the small config's seven trainings by ~40 % (29
min against the 48 min their wall times add up to).

Each job leaves its result on disk: the main run writes the bundle folder itself, another
whole run a bundle folder under the work folder, a path its weights as safetensors (a file
this run just wrote, never a pickle). The parent then assembles them in a fixed order.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from engine.models.config import ModelConfig
from engine.models.specclip import SpecClipModel

log = logging.getLogger(__name__)

# longest first, so that two workers finish together (wall seconds of the small config's
# trainings, one torch thread each, two workers on 2 cores: XP path ~585, a 3,200-step LAMOST
# path ~395-536, a whole run ~320)
_ORDER = {"xp_path": 0, "lamost_path": 1, "run": 2}


@dataclass(frozen=True)
class Job:
    kind: str       # "run" (index 0: the main run), "lamost_path" or "xp_path"
    index: int = 0

    @property
    def name(self) -> str:
        return f"{self.kind}{self.index}"


@dataclass(frozen=True)
class JobContext:
    """What every job needs, picklable for a spawned worker."""

    cfg: ModelConfig            # the whole config (ensembles and paths included)
    out: str                    # the main run's bundle folder
    work: str                   # where the other jobs leave their results
    data_root: str
    pairs_csv: str | None = None
    checkpoints: str | None = None   # the main run's per-stage checkpoints
    log_level: int = logging.INFO


def planned_jobs(cfg: ModelConfig) -> list[Job]:
    """Every training `cfg` needs, the main run first."""
    h = cfg.heads
    jobs = [Job("run", 0)]
    if h.lamost_params_steps == 0 or h.lamost_runs_labels:
        jobs += [Job("run", i) for i in range(1, h.lamost_members)]
    if h.lamost_params_steps > 0:
        jobs += [Job("lamost_path", i) for i in range(h.lamost_members)]
    if h.xp_params_hidden:
        jobs += [Job("xp_path", i) for i in range(h.xp_params_members)]
    return jobs


def run_job(job: Job, ctx: JobContext, data=None) -> dict:
    """Train `job`; returns where its result is, its wall seconds and (paths) its report.
    `data`: the main run's training.train.TrainingData, loaded here when None."""
    from training.ensemble_fit import lamost_path_config, single_run_config
    from training.train import load_training_data, train, train_lamost_path, train_xp_path
    from training.xp_path_fit import xp_path_config

    t0 = time.time()
    cfg = ctx.cfg
    if job.kind == "run":
        c = single_run_config(cfg, job.index)
        folder = ctx.out if job.index == 0 else str(Path(ctx.work) / job.name)
        # a subsampled XP library depends on the seed: each run then draws its own
        own = data if (job.index == 0 or cfg.train.max_xp_train == 0) else None
        version = train(c, folder, ctx.data_root, ctx.pairs_csv,
                        ctx.checkpoints if job.index == 0 else None, data=own)
        return {"folder": folder, "version": version, "seconds": round(time.time() - t0, 1)}
    d = data if data is not None else load_training_data(cfg, Path(ctx.data_root),
                                                         ctx.pairs_csv)
    if job.kind == "lamost_path":
        c = lamost_path_config(cfg, job.index)
        log.info("LAMOST parameters: training path %d of %d (seed %d, %d head steps)",
                 job.index + 1, cfg.heads.lamost_members, c.train.seed,
                 c.train.heads_lamost_steps)
        model, report = train_lamost_path(c, d)
        head = report["heads_lamost"]
        info = {"seed": c.train.seed, "heads_lamost_steps": c.train.heads_lamost_steps,
                "kept_step": head["best_step"], "validation_nll": round(head["val_nll"], 4)}
    elif job.kind == "xp_path":
        c = xp_path_config(cfg, job.index)
        log.info("XP parameters: training path %d of %d (XP widths %s, seed %d)",
                 job.index + 1, cfg.heads.xp_params_members, list(c.xp.mlp.hidden),
                 c.train.seed)
        model, info = train_xp_path(c, d)
    else:
        raise ValueError(f"unknown training job {job.kind!r}")
    weights = str(Path(ctx.work) / f"{job.name}.safetensors")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
              weights, metadata={"format": "pt"})
    return {"weights": weights, "info": info, "seconds": round(time.time() - t0, 1)}


def load_path_model(cfg: ModelConfig, weights: str) -> SpecClipModel:
    """A path job's model (config `cfg`, the path's own) from the weights it left."""
    model = SpecClipModel(cfg)
    model.load_state_dict(load_file(weights))
    return model.eval()


def _init_worker(level: int) -> None:
    logging.basicConfig(level=level,
                        format="%(levelname)s %(processName)s %(name)s: %(message)s")


def run_jobs(jobs: list[Job], ctx: JobContext, data=None, workers: int = 1) -> dict[str, dict]:
    """Run `jobs` on `data` (loaded by each job when None), in this process when `workers` is
    1, else `workers` at a time in spawned processes; results by job name."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    results: dict[str, dict] = {}
    if workers == 1 or len(jobs) == 1:
        for n, job in enumerate(jobs, 1):
            log.info("training %s (%d of %d)", job.name, n, len(jobs))
            results[job.name] = run_job(job, ctx, data)
        return results
    todo = sorted(jobs, key=lambda j: (_ORDER[j.kind], j.index))
    log.info("training %d runs and paths in %d worker processes", len(jobs), workers)
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(ctx.log_level,)) as pool:
        # the data travel to each worker (pickled by multiprocessing: arrays this process
        # loaded, no user file), so every job reads exactly what it would read here
        pending = {pool.submit(run_job, job, ctx, data): job for job in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                job = pending.pop(fut)
                try:
                    results[job.name] = fut.result()
                except Exception as exc:
                    for other in pending:
                        other.cancel()
                    raise RuntimeError(f"training job {job.name} failed: {exc}") from exc
                log.info("%s done in %.0f s (%d of %d)", job.name,
                         results[job.name]["seconds"], len(results), len(jobs))
    return results
