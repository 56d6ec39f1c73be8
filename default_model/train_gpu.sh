#!/usr/bin/env bash
# Train the default model on one GPU of an offline machine, inside a time budget, from a kit
# made by scripts/offline_kit.sh train; run from the repository root. Measures the training
# throughput first (the D-LinkNet34 1024² figure of docs/benchmarks.md and the chosen arch at
# 512², for sizing), sets the epochs so the cosine schedule ends inside the budget, trains with
# --max-minutes as the hard stop, and leaves in OUT: report.txt (GPU, benchmarks, the train log),
# log.csv and best.pt as fp16 in parts of 15 MiB (join with cat; calibrate and export here with
# default_model/export_model.py, score with default_model/evaluate_model.py).
# Usage: default_model/train_gpu.sh KIT OUT [ARCH (dlinknet34)] [MINUTES (6)]
# DEVICE=cpu, BENCH_CROP_1024=0 and SAMPLES_PER_IMAGE=2 run the same steps on a CPU (to test it).
set -euo pipefail
kit=${1:?usage: default_model/train_gpu.sh KIT OUT [ARCH] [MINUTES]}
out=${2:?usage: default_model/train_gpu.sh KIT OUT [ARCH] [MINUTES]}
arch=${3:-dlinknet34}
minutes=${4:-6}
device=${DEVICE:-cuda}
mkdir -p "$out"
rm -rf /tmp/roadseg-run
report="$out/report.txt"
export PYTHONUNBUFFERED=1
if ! python3 -c "import albumentations" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/roadseg-site "$kit"/wheels/*.whl
  export PYTHONPATH="/tmp/roadseg-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi";
  python3 -c "import torch; print('torch', torch.__version__)"; } | tee "$report"
if [ "${BENCH_CROP_1024:-1}" = 1 ]; then
  python3 scripts/benchmark_train.py --device "$device" --arch dlinknet34 --arch-kwargs '{}' --crop 1024 --batch-size 16 --steps 10 --warmup 3 --rounds 2 | tee -a "$report"
fi
python3 scripts/benchmark_train.py --device "$device" --arch "$arch" --arch-kwargs '{}' --crop 512 --batch-size 16 --steps 10 --warmup 3 --rounds 1 | tee -a "$report"
img_s=$(awk '/amp channels_last/ {print $(NF-2)}' "$report" | tail -1)
n_train=$(( $(ls "$kit/data/images" | wc -l) - 2 ))  # two validation images (default_model/gpu.yaml)
spi=${SAMPLES_PER_IMAGE:-$(awk '/samples_per_image/ {print $2}' default_model/gpu.yaml)}
# 70 % of the model-only rate: data loading and whole-image validation take the rest
epochs=$(python3 -c "print(max(1, int($minutes * 60 * 0.7 * $img_s / ($n_train * $spi))))")
echo "training $arch for $epochs epochs of $((n_train * spi)) crops, at most $minutes min" | tee -a "$report"
python3 -m roadseg train --config default_model/gpu.yaml --data "$kit/data" --out /tmp/roadseg-run \
  --set model.arch="$arch" --set data.samples_per_image="$spi" --device "$device" --epochs "$epochs" --max-minutes "$minutes" -q 2>&1 | tee -a "$report"
which=best; [ -f /tmp/roadseg-run/best.pt ] || which=last  # stopped before the first epoch ended
python3 default_model/export_model.py /tmp/roadseg-run --which "$which" --out "$out/best_fp16.pt" | tee -a "$report"
cp /tmp/roadseg-run/log.csv "$out/"
split -b 15M -d "$out/best_fp16.pt" "$out/best_fp16.pt.part." && rm "$out/best_fp16.pt"
ls -la "$out"
