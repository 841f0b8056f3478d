"""Benchmark: what ``lcc_latents="train"`` saves against the eval pass, and costs.

Plain cross-entropy and the LCC variants ``lcc_latents="eval"`` and ``"train"`` on the
same seeds, every method of a seed from the same weights and batches, order rotated per
seed, one fit at a time. Each finished fit is appended to ``runs.jsonl``; a rerun with
the same ``--out`` skips the fits already there (resumable). The report pairs ``"train"``
with ``"eval"`` and gives fit-time ratios to CE of the same seed.

Every other option is ``benchmarks/cifar100.py``'s (same data, model and recipe). (This
script also measured ``lcc_refresh_mode="overlap"`` until 0.2.0 removed it; its results
stay in docs/results/refresh-overlap*.)

Examples
--------
The numbers of docs/estimator.md, "Refresh schedule and cost" (CIFAR-10 head regime,
refresh every epoch after 8)::

    python benchmarks/refresh_latents.py --dataset cifar10 --finetune head \
        --image-size 128 --epochs 20 --lcc-warmup 8 --lcc-interval 1 --seeds 0 1 2 \
        --out bench-out/refresh-latents

"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from cifar100 import fit_one, warm_up
from tqdm.auto import tqdm

from lccbench.config import parse_args, resolve_config
from lccbench.data import prepare_data
from lccbench.measure import machine_info
from lccbench.report import jsonable
from lccbench.stats import mean_std, median_timings, paired_summary
from sklcc.diagnostics import history_key

VARIANTS = ("eval", "train")
REFERENCE = "eval"


def variant_params(variant: str) -> dict[str, str]:
    """Estimator parameters of a variant (its ``lcc_latents``)."""
    return {"lcc_latents": variant}


def summarize_fits(runs: list[dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    """One row per method: accuracy, paired difference with ``eval``, time, refreshes."""
    by = {(r["method"], r["seed"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs
                    if all((m, r["seed"]) in by for m in ["ce", *variants])})
    if not seeds:
        return []
    rows = []
    for method in ["ce", *variants]:
        mine = [by[method, s] for s in seeds]
        top1 = [100 * r["top1"] for r in mine]
        row = {"method": method, "seeds": seeds, "top1": mean_std(top1),
               "fit_s": float(np.median([r["fit_s"] for r in mine])),
               "ratio_to_ce": sum(r["fit_s"] for r in mine)
               / sum(by["ce", s]["fit_s"] for s in seeds),
               "ratio_per_seed": [r["fit_s"] / by["ce", s]["fit_s"]
                                  for r, s in zip(mine, seeds, strict=True)]}
        if method != "ce":
            ref = [100 * by[REFERENCE, s]["top1"] for s in seeds]
            row["vs_reference"] = paired_summary(top1, ref).to_dict()
            refreshes = [f for r in mine for f in r["refreshes"]]
            row["refreshes_per_fit"] = len(refreshes) / len(mine)
            row["timings"] = median_timings(refreshes)
            row["refresh_per_fit_s"] = float(np.median(
                [sum(f[history_key("refresh_s")] for f in r["refreshes"]) for r in mine]))
        rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], cfg: dict, machine: dict) -> str:
    """Markdown report."""
    lines = ["# Refresh schedule: where the latents come from", "",
             f"Command: `{cfg['command']}`", "",
             f"Machine: {machine['device_name']}, {machine['cpus_usable']} usable cores, torch "
             f"{machine['torch']} with {machine['torch_threads']} threads; commit "
             f"{machine['git_commit']}{' (dirty)' if machine['git_dirty'] else ''}.", ""]
    if rows:
        lines += [f"## Fits (seeds {rows[0]['seeds']})", "",
                  "| method | top-1 % | Δ top-1 vs eval, pt [95 % CI] | p | fit s (median) "
                  "| fit ratio to CE, pooled (per seed) | refreshes | refresh s | latents s "
                  "| refresh s per fit |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            mean, std = r["top1"]
            per_seed = ", ".join(f"{x:.2f}" for x in r["ratio_per_seed"])
            cells = [r["method"], f"{mean:.2f} ± {std:.2f}"]
            if "vs_reference" in r and r["method"] != REFERENCE:
                p = r["vs_reference"]
                cells += [f"{p['mean_diff']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}]",
                          f"{p['p_value']:.2f}"]
            else:
                cells += ["—", "—"]
            cells += [f"{r['fit_s']:.1f}", f"{r['ratio_to_ce']:.3f} ({per_seed})"]
            if "timings" in r:
                t = r["timings"]
                cells += [f"{r['refreshes_per_fit']:.0f}", f"{t['lcc_refresh_s']:.2f}",
                          f"{t['lcc_latents_s']:.2f}", f"{r['refresh_per_fit_s']:.1f}"]
            else:
                cells += ["—"] * 4
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the fits, resumably, and write the report."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--variants", nargs="+", default=list(VARIANTS),
                     help=f"LCC variants among {VARIANTS}")
    own.add_argument("--lcc-layers", nargs="+", default=None,
                     help="latent layers of every variant (default: the head's hidden layer, "
                          "before its dropout; 'head.out:input' is after it)")
    own.add_argument("--no-fits", action="store_true",
                     help="run no fit (report the fits already done)")
    mine, rest = own.parse_known_args(argv)
    cfg = resolve_config(parse_args(rest, description=__doc__.split("\n\n")[0]), argv,
                         script=__file__)
    cfg["methods"] = ["ce", "lcc"]
    unknown = set(mine.variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--variants {sorted(unknown)} unknown; choose from {VARIANTS}.")
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info(cfg["device"])
    log = out / "runs.jsonl"
    runs = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    done = {(r["method"], r["seed"]) for r in runs}
    methods = ["ce", *mine.variants]
    if not mine.no_fits:
        data = prepare_data(cfg)
        warm_up(cfg, data)
        for i, seed in enumerate(cfg["seeds"]):
            shift = i % len(methods)
            for method in methods[shift:] + methods[:shift]:
                if (method, seed) in done:
                    continue
                params = None if method == "ce" else variant_params(method)
                if params is not None and mine.lcc_layers:
                    params["lcc_layers"] = mine.lcc_layers
                run = fit_one("ce" if method == "ce" else "lcc", seed, cfg, data, params)
                run["method"] = method
                runs.append(jsonable(run))
                with log.open("a") as f:
                    f.write(json.dumps(runs[-1]) + "\n")
                tqdm.write(f"[fit] {method:>13} seed {seed}: top-1 {run['top1']:.4f} "
                           f"fit {run['fit_s']:.1f} s")
    rows = summarize_fits(runs, mine.variants) if runs else []
    report = render(rows, cfg, machine)
    (out / "results.md").write_text(report)
    (out / "results.json").write_text(json.dumps(jsonable(
        {"config": cfg, "machine": machine, "summary": rows}), indent=1))
    tqdm.write(report)


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
