"""Quality benchmark: does ARM, from early SFT checkpoints, beat converged SFT?

    python benchmarks/quality.py --quick              # tiny Llama, 3 seeds, minutes on 2 cores
    python benchmarks/quality.py --full --seeds 0     # SmolLM2-135M-Instruct (CPU: ~1.5 h)
    python benchmarks/quality.py --quick --task basic_arithmetic --data-seed 7 --seeds 5,6,7

Writes ``quality-<preset>.md`` and ``.json`` into ``--out`` (default
``benchmarks/results``). SFT runs (and the rebuilt SmolLM2 folder) are cached in
``--cache`` so a re-run reuses them; so are finished seeds, keyed by the preset, the seed,
the thread count and a fingerprint of the benchmark and package code (``--fresh``
recomputes them). Each finished seed is also written to ``--records`` (default
``benchmarks/results/seeds``, committed): a later run of the same code and preset, on
another machine, reuses it, so the seeds of a preset can be computed in different sessions
and aggregated by one invocation listing them all. See ``docs/quality.md`` for the protocol.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import peak_rss_gib, return_freed_heap_every  # noqa: E402
from quality_lib import candidates, pipeline, recipes, report  # noqa: E402

from mergekit_arm._io import write_text_atomic  # noqa: E402

ARM_DRIVER = ("mergekit_arm.stream.run_steps / stream_step, the loop arm-stream runs, in memory "
              "(mergekit_arm.calibration.calibrate + mergekit merge_state_dicts(..., 'arm'))")


def code_fingerprint() -> str:
    """SHA-256 (12 hex) of the Python sources that compute a seed's results (the
    benchmark's library and the package; not this script nor the report modules
    ``report*.py``, which only orchestrate, aggregate finished seeds and format): a finished
    seed is reused only by the same code."""
    import mergekit_arm

    here = Path(__file__).resolve().parent
    files = sorted([*(f for f in (here / "quality_lib").glob("*.py")
                      if not f.name.startswith("report")),
                    *Path(mergekit_arm.__file__).resolve().parent.rglob("*.py")])
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def results_name(preset: pipeline.Preset) -> str:
    """``quick``, ``full``, ... plus the second task and data seed when not the defaults."""
    name = preset.name
    if preset.task2 != "chain_sum":
        name += f"-{preset.task2}"
    if preset.data_seed:
        name += f"-data{preset.data_seed}"
    return name


def _log(message: str) -> None:
    print(f"{datetime.now(timezone.utc).strftime('%H:%M:%S')} {message}", flush=True)


@click.command()
@click.option("--quick", "preset_name", flag_value="quick", default=True,
              help="tiny Llama from scratch (default)")
@click.option("--full", "preset_name", flag_value="full", help="SmolLM2-135M-Instruct")
@click.option("--gpu", "preset_name", flag_value="gpu",
              help="SmolLM2-135M-Instruct, 4x the SFT data, 5 seeds (benchmarks/device)")
@click.option("--seeds", default=None, help="comma-separated seeds (quick: 0,1,2; full: 0; gpu: 0-4)")
@click.option("--out", "out_dir", default="benchmarks/results", type=click.Path(file_okay=False))
@click.option("--cache", "cache_dir", default="benchmarks/.cache/quality", type=click.Path(file_okay=False))
@click.option("--records", "records_dir", default="benchmarks/results/seeds",
              type=click.Path(file_okay=False),
              help="finished seeds, one JSON file each, keyed like the cache (commit them: "
                   "a clean checkout of the same code reuses them); '' to not write or read")
@click.option("--smallest", is_flag=True, help="CI smoke-test settings (seconds)")
@click.option("--threads", default=None, type=int, help="torch threads (default: all cores)")
@click.option("--device", default="cpu", show_default=True,
              help="where the model trains and is evaluated: cpu, cuda or cuda:N (checkpoints "
                   "and merges stay on the CPU); a non-CPU device keys its own records and "
                   "SFT cache")
@click.option("--task", default=None,
              help="second task: any reasoning-gym dataset with question/answer items "
                   "(default chain_sum)")
@click.option("--task-config", default=None,
              help='JSON keyword arguments of that dataset, e.g. \'{"max_terms": 3}\' '
                   "(default: the preset's for chain_sum, {} otherwise)")
@click.option("--data-seed", default=None, type=int,
              help="shift every dataset seed and the gsm template split (another instance)")
@click.option("--set", "overrides", multiple=True,
              help="override a preset field, e.g. --set n_train_gsm=200 (JSON values)")
@click.option("--fresh", is_flag=True, help="recompute seeds even if a finished result of the "
              "same code and preset is cached")
@click.option("--readme", "--table-file", "readme", default=None,
              type=click.Path(dir_okay=False, exists=True),
              help="also rewrite the preset's quality-table block in this Markdown file "
                   "(between its <!-- quality-table:NAME:start/end --> markers; the full "
                   "table lives in docs/quality.md)")
@click.option("--diagnostics", is_flag=True,
              help="also run the arm-single variants (energy pairing, eigengap rank, ...), "
                   "which three seeds showed to be ties of arm-single")
@click.option("--trim-heap", "trim_heap_s", default=5.0, show_default=True, type=float,
              help="give freed heap back to the OS every this many seconds (glibc "
                   "malloc_trim; changes no result, lowers resident memory); 0: off")
@click.option("--records-of", "records_of", default=None, metavar="FINGERPRINT",
              help="only aggregate the finished seeds of this earlier code fingerprint (their "
                   "records or cache files; the tables name it): computes nothing, and a seed "
                   "without a record is an error")
@click.option("--sft-only", is_flag=True,
              help="only build the origin and the SFT run of each seed into --cache, then exit")
def main(preset_name: str, seeds: str | None, out_dir: str, cache_dir: str, records_dir: str,
         smallest: bool, threads: int | None, task: str | None, task_config: str | None, data_seed: int | None,
         overrides: tuple[str, ...], fresh: bool, readme: str | None, sft_only: bool,
         diagnostics: bool, trim_heap_s: float, records_of: str | None, device: str) -> None:
    """Run the benchmark and write its tables."""
    if threads:
        torch.set_num_threads(threads)
    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise click.BadParameter(f"{device!r} is not available here (torch.cuda.is_available() "
                                 f"is {torch.cuda.is_available()}); use cpu", param_hint="--device")
    device_tag = "" if device == "cpu" else "-" + device.split(":")[0]
    trimming = return_freed_heap_every(trim_heap_s)
    preset = {"quick": pipeline.QUICK, "full": pipeline.FULL, "gpu": pipeline.GPU}[preset_name]
    if smallest:
        preset = pipeline.smallest(preset)
    if diagnostics:
        preset = replace(preset, diagnostics=True)
    if task is not None:
        preset = replace(preset, task2=task, task2_config={} if task != "chain_sum"
                         else preset.task2_config)
    if task_config is not None:
        preset = replace(preset, task2_config=json.loads(task_config))
    if data_seed is not None:
        preset = replace(preset, data_seed=data_seed)
    for item in overrides:
        key, _, value = item.partition("=")
        if not hasattr(preset, key):
            raise click.BadParameter(f"unknown preset field {key!r}", param_hint="--set")
        try:
            preset = replace(preset, **{key: json.loads(value)})
        except json.JSONDecodeError as error:
            raise click.BadParameter(f"{item!r}: the value is not JSON ({error})",
                                     param_hint="--set") from error
    seed_list = ([int(s) for s in seeds.split(",")] if seeds else
                 {"quick": [0, 1, 2], "gpu": [0, 1, 2, 3, 4]}.get(preset_name, [0]))
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    if sft_only:
        for seed in seed_list:
            with tempfile.TemporaryDirectory(prefix="quality-") as work:
                pipeline.Run(preset, seed, cache, Path(work), log=_log, device=device).prepare()
        return
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    per_seed: list[dict] = []
    reused: list[int] = []
    current_code = code_fingerprint()
    fingerprint = records_of or current_code
    names = candidates.candidate_names(preset.diagnostics)

    def payload() -> dict:
        return {
            "preset": asdict(preset),
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": time.perf_counter() - t0,
            "machine": report.machine(),
            "arm_driver": ARM_DRIVER,
            "code_fingerprint": fingerprint,
            "reported_by_code": current_code,
            "heap_trim_s": trim_heap_s if trimming else None,
            "device": device,
            "seeds_requested": seed_list,
            "reused_seeds": reused,
            "complete": len(per_seed) == len(seed_list),
            "candidates": list(names),
            "baselines": list(recipes.BASELINES),
            "recipes": list(recipes.RECIPES),
            "table": report.aggregate(per_seed, names),
            "seeds": per_seed,
        }

    preset_key = hashlib.sha256(json.dumps(asdict(preset), sort_keys=True).encode()).hexdigest()[:12]
    def finished(seed: int) -> tuple[str, Path, Path | None, list[Path]]:
        # the thread count is part of the key: float reductions, hence results, depend on it
        name = (f"result-{preset.name}-{preset_key}-{fingerprint}{device_tag}"
                f"-t{torch.get_num_threads()}-seed{seed}.json")
        record = Path(records_dir) / name if records_dir else None
        return name, cache / name, record, [f for f in (cache / name, record)
                                            if f is not None and f.is_file()]

    missing = [(seed, finished(seed)[0]) for seed in seed_list if not finished(seed)[3]]
    if records_of and missing:  # checked first: nothing is written then
        raise click.ClickException(
            f"--records-of {records_of}: no finished result for seed(s) "
            f"{', '.join(str(seed) for seed, _ in missing)} ({missing[0][1]}, ...) in "
            f"{records_dir or '-'} or {cache}; run without --records-of to compute them")
    for seed in seed_list:
        name, done, record, found = finished(seed)
        if found and not fresh:
            _log(f"[seed {seed}] reusing the finished result {found[0]}")
            result = json.loads(found[0].read_text(encoding="utf-8"))
            if record is not None and not record.is_file():
                write_text_atomic(record, json.dumps(result, default=str, indent=0))
            per_seed.append(result)
            reused.append(seed)
        else:
            with tempfile.TemporaryDirectory(prefix="quality-") as work:
                run = pipeline.Run(preset, seed, cache, Path(work), log=_log, device=device)
                run.prepare()
                candidates.run_candidates(run)
                result = {"seed": seed, "results": run.results, "timings": run.timings,
                          "diagnostics": run.diagnostics, "sft_history": run.sft_history,
                          "splits": run.splits.summary(),
                          # the process's peak so far: this seed's own when it ran first
                          "peak_rss_gib": peak_rss_gib(), "heap_trim_s":
                          trim_heap_s if trimming else None, "seeds_before_in_process":
                          len(per_seed) - len(reused)}
            for target in (done, record):
                if target is not None:
                    write_text_atomic(target, json.dumps(result, default=str, indent=0))
            per_seed.append(result)
        # Written after every seed, so an interrupted run still leaves its finished seeds.
        md, js = report.write(Path(out_dir), results_name(preset), payload())
    _log(f"wrote {md} and {js}")
    if readme:
        final = json.loads(js.read_text(encoding="utf-8"))
        target = Path(readme).resolve()
        link = Path(os.path.relpath(md.resolve(), target.parent))  # e.g. ../benchmarks/...
        report.update_readme(target, results_name(preset), final, link)
        _log(f"updated the {results_name(preset)} table in {readme}")
    print(md.read_text(encoding="utf-8").split("## Selected")[0])


if __name__ == "__main__":
    main()
