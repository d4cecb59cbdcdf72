"""The sizing note (benchmarks/SIZING.md): memory, disk and time for a large catalogue,
derived from the per-point figures in bench.json (this run's, or an earlier run's that
`benchmarks/run.py --keep-skipped` kept; the note says which)."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.common import payload_columns, payload_row

GB = 1e9


def payload_bytes() -> float:
    cols = payload_columns(1000)
    return sum(len(json.dumps(payload_row(cols, i))) for i in range(1000)) / 1000


def sizing(results: dict[str, Any], n_target: int = 250_000_000) -> dict[str, Any]:
    largest = max((r for r in results["search"] if "edge" in r), key=lambda r: r["n"])
    edge, dim = largest["edge"], largest["dim"]
    enc = results.get("encoder", {}).get("small", {})
    own = max(enc.get("own_dim", {"x": dim}).values())
    m = 16                                              # CollectionOptions.hnsw_m
    per = {                                             # bytes per point
        "vectors_float32": 4 * (dim + own),             # shared + the instrument's own vector
        "vectors_int8": dim + own,                      # scalar quantized copies (RAM)
        "hnsw_graph": 2 * m * 4 * 1.1 + 2 * m * 4 * 0.1,  # layer 0 (2m links) + upper layers
        "payload_json": round(payload_bytes(), 1),
        "measured_disk": edge["disk_per_point_bytes"],
        "measured_rss": edge["rss_per_point_bytes"],
    }
    per["hnsw_graph"] = round(per["hnsw_graph"], 1)
    for survey in ("lamost", "gaia_xp"):          # the store's own copy of each spectrum
        size = results.get("archive", {}).get(survey, {}).get("bytes_per_spectrum")
        if size:
            per[f"spectrum_{survey}"] = size
    upsert_rate = edge["upsert_points_per_s"]
    optimize_per_point = edge["optimize_s"] / largest["n"]
    xp_rate = enc.get("gaia_xp", {}).get("spectra_per_s")
    lamost_rate = enc.get("lamost", {}).get("spectra_per_s")
    shape = edge.get("store_shape")
    out = {"n_target": n_target, "from_n": largest["n"], "shared_dim": dim, "own_dim": own,
           "encoder_weights": enc.get("weights"), "rv_template_fit": enc.get("rv_template_fit"),
           "store_shape": (f"{len(shape['vectors'])} named vectors "
                           f"({', '.join(f'{k} {v}-d' for k, v in shape['vectors'].items())}), "
                           f"{shape['payload_indexes']} payload indexes") if shape else
           "shared vector only, 12 payload indexes (a run before the store was benchmarked "
           "in the indexer's shape)",
           "sync": sync_costs(results.get("incremental") or {}),
           "per_point_bytes": per,
           "total_gb": {k: round(v * n_target / GB, 1) for k, v in per.items()},
           "hours_on_this_machine": {
               "upsert": round(n_target / upsert_rate / 3600, 1),
               "hnsw_build": round(optimize_per_point * n_target / 3600, 1),
               "embed_xp_small": round(n_target / xp_rate / 3600, 1) if xp_rate else None,
               "embed_lamost_small": (round(n_target / lamost_rate / 3600, 1)
                                      if lamost_rate else None)}}
    return out


def sync_costs(inc: dict[str, Any]) -> dict[str, Any]:
    """Per-point and per-file costs of a sync, from benchmarks/incremental.py's rows."""
    from benchmarks.incremental import SCORING

    rows = [r for r in inc.get("rows", []) if r.get("scoring") == SCORING]
    out: dict[str, Any] = {}
    for r in rows:
        add = r["add_1000_spectra"]
        out[r["n"]] = {"add_1_file_s": r["add_1_file"]["seconds"],
                       "add_1_more_file_s": (r.get("add_1_more_file") or {}).get("seconds"),
                       "add_1000_s": add["seconds"],
                       "add_1000_scoring_s": add["phases_s"].get("scoring"),
                       "ms_per_added_spectrum": round(1e3 * add["seconds"] / max(1, add["added"]),
                                                      1),
                       "store_build_s": r["full_build_store_side"]["total_s"],
                       "update_10_existing_s": (r.get("update_10_existing") or {}).get("seconds"),
                       "add_10_entering": r.get("add_10_entering"),
                       "read_embed_ms_per_spectrum": (
                           round(1e3 * r["read_embed_per_spectrum_s"], 1)
                           if r.get("read_embed_per_spectrum_s") is not None else None),
                       "full_build_real_s": r.get("full_build_real_spectra_s"),
                       "ratios": r.get("ratios", {}),
                       "opened_note": r.get("prebuilt"),
                       "shard_allocated_mib": r.get("shard_allocated_mib"),
                       "add_1_file_free_space_asked_mib":
                           r["add_1_file"].get("free_space_asked_mib"),
                       "load_avg_at_start": r.get("load_avg_at_start")}
    res = inc.get("unchanged_resync") or {}
    if res.get("files"):
        out["unchanged_resync"] = {
            "files": res["files"],
            "ms_per_file_by_stat": round(1e3 * res["unchanged_by_stat_s"] / res["files"], 3),
            "ms_per_file_rereading": round(1e3 * res["unchanged_by_rereading_s"] / res["files"],
                                           2),
            "speedup": res["speedup"]}
    return out


def _sync_lines(sync: dict[str, Any]) -> list[str]:
    if not sync:
        return []
    lines = ["", "Sync costs (`benchmarks/incremental.py`: real LAMOST spectra added to N "
             "synthetic points through the whole sync, incremental scoring included (the "
             "existing points' neighbour-score refreshes deferred, engine/stale_scores.py); the "
             "store "
             "was already open, so loading its shard (once per process, in proportion to N: "
             "1.5-1.9 s at 100k points, 16-30 s at 1M here) is not counted. Publishing seals "
             "only the segments a write changed: below the indexing threshold (~20k points "
             "here) the whole store is one unindexed segment, sealed again by every add, so "
             "10k costs more per add than 100k; segments hold at most ~200,000 points "
             "(CollectionOptions.max_segment_points), so a 1M store has 5 of them; each "
             "publication hard-links the segments a write did not change and copies and "
             "seals the others):", ""]
    for n, c in sync.items():
        if isinstance(n, int) or str(n).isdigit():
            more = (f" (a second file: {c['add_1_more_file_s']} s)"
                    if c.get("add_1_more_file_s") is not None else "")
            lines.append(f"- N = {int(n):,}: adding 1 file {c['add_1_file_s']} s{more}, "
                         f"adding 1,000 spectra {c['add_1000_s']} s "
                         f"({c['ms_per_added_spectrum']} ms per spectrum: read, embed, write, "
                         f"score ({c['add_1000_scoring_s']} s of it), publish) vs "
                         f"{c['store_build_s']} s to build the store itself")
            if c.get("opened_note"):
                lines.append(f"  - {c['opened_note']}")
            ratios = c.get("ratios") or {}
            if "add_1000_over_full_build_real" in ratios:
                lines.append(
                    f"  - 1,000 spectra over the store-side build (upsert + optimize + publish "
                    f"of the synthetic bulk): {100 * ratios['add_1000_over_store_build']:.2f}%; "
                    f"over a full build of {int(n):,} real spectra (that build plus {int(n):,} x "
                    f"{c['read_embed_ms_per_spectrum']} ms read + embed per spectrum measured in "
                    f"the same run = {c['full_build_real_s']} s, computed, not measured): "
                    f"{100 * ratios['add_1000_over_full_build_real']:.2f}%")
            asked = c.get("add_1_file_free_space_asked_mib")
            if asked and c.get("shard_allocated_mib") is not None:
                lines.append(
                    "  - free space the 1-file add asked for (each plus a 16 MiB margin): "
                    + ", ".join(f"{k} {v:,} MiB" for k, v in sorted(asked.items()))
                    + f"; the shard occupies {c['shard_allocated_mib']:,} MiB (publishing "
                    "asked for twice that before 733d43b; optimize still asks for it once, "
                    "its worst case)")
            if c.get("update_10_existing_s") is not None:
                lines.append(f"  - updating 10 existing points spread over the store and "
                             f"publishing (every segment they live in is sealed again; what "
                             f"writing refreshes at once would cost): "
                             f"{c['update_10_existing_s']} s")
            entering = c.get("add_10_entering")
            if entering:
                what = (f"entering {entering['neighbours_updated']} existing "
                        f"neighbourhoods, whose refreshes were deferred "
                        f"({entering['deferred']} waiting, {entering['deferred_written']} "
                        f"written in a batch)" if entering["scoring"] != "full" else
                        "which passed the staleness bound: the sync ran the full scoring pass")
                lines.append(f"  - adding {entering['points']} points next to existing ones "
                             f"({what}), scoring and publishing: {entering['seconds']} s")
            if c.get("load_avg_at_start"):
                lines.append(f"  - load average at the start of this row's run: "
                             f"{c['load_avg_at_start']}")
    if "unchanged_resync" in sync:
        u = sync["unchanged_resync"]
        lines.append(f"- unchanged re-sync of {u['files']:,} LAMOST files: "
                     f"{u['ms_per_file_by_stat']} ms per file by stat vs "
                     f"{u['ms_per_file_rereading']} ms re-reading and re-hashing "
                     f"({u['speedup']}x)")
    return lines


def _largest(hours: dict[str, Any]) -> str:
    known = {k: v for k, v in hours.items() if v}
    name = max(known, key=known.get)
    return f"`{name}` ({known[name]} h)"


def _gpu_lines(gpu: dict[str, Any] | None, n_target: float, shipped: str | None = None
               ) -> list[str]:
    """Embedding hours on a GPU from `python -m benchmarks.device_check` (another machine);
    `shipped`: the shipped bundle's version, named when the GPU measured another."""
    if not gpu:
        return []
    measured = gpu.get("bundle")
    later = (f"; the shipped bundle {shipped} was not measured there, and its CPU rates "
             "above include the networks added since" if shipped and measured
             and shipped != measured else "")
    rate = gpu["throughput_spectra_per_s"]
    best = {k: max(v.values()) for k, v in rate["gpu"].items() if isinstance(v, dict)}
    m, cpu = gpu["machine"], rate["cpu"]
    agree = gpu["agreement"].values()
    vec = max(a[f"max_abs_diff_{k}"] for a in agree for k in ("shared", "own", "translated"))
    teff = max(a["params_max_abs_diff"]["teff"] for a in agree)
    overlap = min(a["top10_shared_overlap"] for a in agree)

    def hours(r):
        return f"{n_target / r / 3600:,.1f} h ({r:,.0f} spectra/s)"
    return [
        f"- embedding with the small model on one {m['gpu']} (`python -m "
        f"benchmarks.device_check`, JSON `benchmarks/results/device_check_h200.json`, "
        f"torch {m['torch']}, best batch size; bundle {measured}{later}): XP "
        f"{hours(best['gaia_xp'])}, LAMOST "
        f"{hours(best['lamost'])} with the RV template fit's chi-square curves on the GPU too "
        f"(the networks alone: {hours(best['lamost_without_rv_fit'])}). The same machine's "
        f"CPU alone ({cpu['threads']} threads, batch {cpu['batch']}): XP {hours(cpu['gaia_xp'])}, "
        f"LAMOST {hours(cpu['lamost'])}. On {sum(a['n'] for a in agree):,} real spectra the GPU's "
        f"vectors differ from the CPU's by at most {vec:.1e}, Teff by {teff:.2f} K and RV by "
        f"{gpu['agreement']['lamost']['params_max_abs_diff']['rv']:.0e} km/s; "
        f"{overlap:.0%} of the 10 nearest neighbours are the same (`specclip index --device "
        "cuda`)",
    ]


def _kept_runs(kept: dict[str, Any] | None) -> list[tuple[tuple[str, str], list[str]]]:
    """Sections an earlier run measured, grouped by that run: [((when, load), names)]."""
    runs: dict[tuple[str, str], list[str]] = {}
    for name, k in sorted((kept or {}).items()):
        runs.setdefault((str(k.get("started_at")), str(k.get("load_avg_at_start"))),
                        []).append(name)
    return sorted(runs.items())


def sizing_markdown(s: dict[str, Any], hw: dict[str, Any], gpu: dict[str, Any] | None = None,
                    shipped: str | None = None, kept: dict[str, Any] | None = None) -> str:
    """The sizing note; `gpu`: a device_check report (another machine), when there is one;
    `shipped`: the shipped bundle's version (the GPU line names it when it measured another);
    `kept`: bench.json sections an earlier run measured (when, and the load then)."""
    t, per, h = s["total_gb"], s["per_point_bytes"], s["hours_on_this_machine"]
    n = s["n_target"] / 1e6
    ram_quant = t["vectors_int8"] + t["hnsw_graph"]
    lines = [
        "# Sizing: 250 million spectra",
        "",
        f"Derived from `benchmarks/results/bench.json` (measured at N = {s['from_n']:,} points on "
        f"{hw.get('cpu_model')}, {hw.get('usable_cores')} cores; regenerate with `make bench`). "
        f"Vectors per point: shared {s['shared_dim']}-d + the instrument's own {s['own_dim']}-d, "
        "float32; payload ~25 fields as the indexer writes them.",
        "",
        "| component | bytes/point | total for %.0fM | where it lives |" % n,
        "|---|---:|---:|---|",
        f"| original vectors (float32) | {per['vectors_float32']} | {t['vectors_float32']} GB | "
        "disk (`on_disk`), page cache when hot |",
        f"| int8 scalar-quantized copies | {per['vectors_int8']} | {t['vectors_int8']} GB | RAM "
        "(searched; originals rescore the top hits) |",
        f"| HNSW graph (m=16) | {per['hnsw_graph']} | {t['hnsw_graph']} GB | RAM |",
        f"| payload (JSON size) | {per['payload_json']} | {t['payload_json']} GB | disk "
        "(`--payload-on-disk`: the default holds payloads in RAM, for stores up to tens of "
        "millions of points), indexed fields in RAM |",
        f"| **measured** disk per point (Edge shard: {s['store_shape']}, payload, HNSW, WAL) | "
        f"{per['measured_disk']} | {t['measured_disk']} GB | |",
        f"| **measured** RSS per point (Edge, after optimize, same content; an upper bound: "
        f"the Python allocator keeps what building the points used) | "
        f"{per['measured_rss']} | {t['measured_rss']} GB | |",
        *[f"| **measured** stored spectrum, {name} (the store's own lossless copy, "
          f"`engine/spectrum_archive.py`; read only for the hits shown) | {per[key]} | "
          f"{t[key]} GB if all {n:.0f}M were {name} | disk (store folder, or the server's "
          "archive folder) |"
          for key, name in (("spectrum_lamost", "LAMOST LRS"), ("spectrum_gaia_xp", "Gaia XP"))
          if key in per],
        "",
        *([f"Spectra kept by the store for a survey-shaped mix (220M Gaia XP + 30M LAMOST): "
           f"{(220e6 * per['spectrum_gaia_xp'] + 30e6 * per['spectrum_lamost']) / 1e12:.2f} "
           "TB of disk, read only for the hits a user looks at.", ""]
          if {"spectrum_gaia_xp", "spectrum_lamost"} <= set(per) else []),
        f"RAM with int8 quantization and originals on disk: about {ram_quant:.0f} GB for vectors "
        "and graph, plus payload indexes and page cache: plan 2x, spread over the cluster. With "
        "replication factor 2 every figure doubles across nodes. A 3-node cluster with 6 shards "
        f"holds ~{2 * ram_quant / 3:.0f} GB of quantized vectors+graph per node (RF 2), and "
        f"~{2 * t['measured_disk'] / 3:.0f} GB of disk per node.",
        "",
        "Time on this machine (one process, measured rates scaled linearly; HNSW build grows a "
        "little faster than linearly):",
        "",
        f"- upsert: {h['upsert']} h; HNSW build (optimize): {h['hnsw_build']} h",
        f"- embedding with the small model on CPU: XP {h['embed_xp_small']} h, LAMOST "
        f"{h['embed_lamost_small']} h ({s.get('encoder_weights') or 'fresh weights'}"
        f"{', the RV template fit included' if s.get('rv_template_fit') else ''}; divide by "
        "the number of Dask workers)",
        *_gpu_lines(gpu, s["n_target"], shipped),
        "",
        *_sync_lines(s.get("sync") or {}),
        "",
        f"The largest part here is {_largest(h)}. Each part parallelises: embedding over Dask "
        "workers (`indexer/distributed.py`, GPUs where present), upserts and HNSW builds over "
        "the shards of the cluster (each node builds the graphs of its own shards).",
        "",
        f"Caveat: the machine was shared while measuring (load average "
        f"{hw.get('load_avg_at_start')} at the start on {hw.get('usable_cores')} cores"
        + "".join(f"; the {', '.join(names[:-1]) + ' and ' if len(names) > 1 else ''}"
                  f"{names[-1]} figures kept from the run of {when}, load "
                  f"{load} then" for (when, load), names in _kept_runs(kept))
        + "), so times are upper bounds; byte counts do not depend on load.",
    ]
    return "\n".join(lines) + "\n"
