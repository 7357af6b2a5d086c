"""Quality benchmark: does ARM, from early SFT checkpoints, beat converged SFT?

    python benchmarks/quality.py --quick              # tiny Llama, 3 seeds, minutes on 2 cores
    python benchmarks/quality.py --full --seeds 0     # SmolLM2-135M-Instruct (CPU: ~1 h)

Writes ``quality-<preset>.md`` and ``.json`` into ``--out`` (default
``benchmarks/results``). SFT runs (and the rebuilt SmolLM2 folder) are cached in
``--cache`` so a re-run reuses them. See ``docs/quality.md`` for the protocol.
"""

from __future__ import annotations

import json
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

from quality_lib import pipeline, report  # noqa: E402

ARM_DRIVER = ("in-memory fixed-set driver in benchmarks/quality_lib/merges.py "
              "(mergekit_arm.calibrate.calibrate + mergekit merge_state_dicts(..., 'arm'))")


def _log(message: str) -> None:
    print(f"{datetime.now(timezone.utc).strftime('%H:%M:%S')} {message}", flush=True)


@click.command()
@click.option("--quick", "preset_name", flag_value="quick", default=True,
              help="tiny Llama from scratch (default)")
@click.option("--full", "preset_name", flag_value="full", help="SmolLM2-135M-Instruct")
@click.option("--seeds", default=None, help="comma-separated seeds (quick: 0,1,2; full: 0)")
@click.option("--out", "out_dir", default="benchmarks/results", type=click.Path(file_okay=False))
@click.option("--cache", "cache_dir", default="benchmarks/.cache/quality", type=click.Path(file_okay=False))
@click.option("--smallest", is_flag=True, help="CI smoke-test settings (seconds)")
@click.option("--threads", default=None, type=int, help="torch threads (default: all cores)")
@click.option("--set", "overrides", multiple=True,
              help="override a preset field, e.g. --set n_train_gsm=200 (JSON values)")
@click.option("--check-stream", is_flag=True,
              help="only compare the in-memory ARM driver with mergekit_arm.stream.run_stream "
                   "on the first seed, print the result and exit")
def main(preset_name: str, seeds: str | None, out_dir: str, cache_dir: str, smallest: bool,
         threads: int | None, overrides: tuple[str, ...], check_stream: bool) -> None:
    """Run the benchmark and write its tables."""
    if threads:
        torch.set_num_threads(threads)
    preset = pipeline.QUICK if preset_name == "quick" else pipeline.FULL
    if smallest:
        preset = pipeline.smallest(preset)
    for item in overrides:
        key, _, value = item.partition("=")
        if not hasattr(preset, key):
            raise click.BadParameter(f"unknown preset field {key!r}", param_hint="--set")
        preset = replace(preset, **{key: json.loads(value)})
    seed_list = ([int(s) for s in seeds.split(",")] if seeds else
                 ([0, 1, 2] if preset_name == "quick" else [0]))
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    per_seed: list[dict] = []

    def payload() -> dict:
        return {
            "preset": asdict(preset),
            "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_seconds": time.perf_counter() - t0,
            "machine": report.machine(),
            "arm_driver": ARM_DRIVER,
            "seeds_requested": seed_list,
            "complete": len(per_seed) == len(seed_list),
            "candidates": list(pipeline.CANDIDATES),
            "table": report.aggregate(per_seed, pipeline.CANDIDATES),
            "seeds": per_seed,
        }

    if check_stream:
        from quality_lib.stream_check import check_stream as run_check

        with tempfile.TemporaryDirectory(prefix="quality-check-") as work:
            run = pipeline.Run(preset, seed_list[0], cache, Path(work), log=_log)
            run.prepare()
            print(json.dumps(run_check(run, Path(work)), indent=1))
        return

    for seed in seed_list:
        with tempfile.TemporaryDirectory(prefix="quality-") as work:
            run = pipeline.Run(preset, seed, cache, Path(work), log=_log)
            run.prepare()
            pipeline.run_candidates(run)
            per_seed.append({"seed": seed, "results": run.results, "timings": run.timings,
                             "diagnostics": run.diagnostics, "sft_history": run.sft_history,
                             "splits": run.splits.summary()})
        # Written after every seed, so an interrupted run still leaves its finished seeds.
        md, js = report.write(Path(out_dir), preset.name, payload())
    _log(f"wrote {md} and {js}")
    print(md.read_text(encoding="utf-8").split("## Selected")[0])


if __name__ == "__main__":
    main()
