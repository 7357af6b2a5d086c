#!/usr/bin/env bash
# End-to-end quick start on tiny local models (CPU, about a minute, nothing downloaded):
# build a base model and a short transformers.Trainer "SFT" run (checkpoint-* folders),
# calibrate the base and one checkpoint, run one ARM merge with plain mergekit-yaml,
# load the result and compare held-out loss.
set -euo pipefail
cd "$(dirname "$0")/.."

arm-demo-models ./arm-demo
arm-calibrate ./arm-demo/models/base        ./arm-demo/stats/base.safetensors        --samples 64 --max-length 128 --rank 32 -q
arm-calibrate ./arm-demo/models/sft-step-20 ./arm-demo/stats/sft-step-20.safetensors --samples 64 --max-length 128 --rank 32 -q
rm -rf ./arm-demo/merged ./arm-demo/expo
mergekit-yaml yaml_examples/arm-single.yml ./arm-demo/merged --quiet   # ARM
mergekit-yaml yaml_examples/expo-single.yml ./arm-demo/expo --quiet    # same step, no rotation
python -m mergekit_arm.demo.report ./arm-demo
