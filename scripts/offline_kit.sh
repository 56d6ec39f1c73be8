#!/usr/bin/env bash
# Pack what an offline GPU machine with PyTorch needs to train the default model
# (scripts/train_default_gpu.sh): the prepared training data (scripts/prepare_default_data.py)
# and wheels of the training-time dependencies a PyTorch image lacks (albumentations and its
# needs; training on image folders imports no rasterio/shapely). The versions are this
# environment's, so the kit trains with the tested set. About 35 MiB.
# Usage: scripts/offline_kit.sh KIT_DIR [PYTHON_VERSION (default 3.12)] [--data ../shared/data]
set -euo pipefail
kit=${1:?usage: scripts/offline_kit.sh KIT_DIR [PYTHON_VERSION] [--data DIR]}
pyver=${2:-3.12}
shift $(( $# >= 2 ? 2 : 1 ))
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$kit/data" "$kit/wheels"
mkdir -p "$kit"
python "$here/scripts/prepare_default_data.py" "$kit/data" "$@"
pkgs=(albumentations albucore pydantic pydantic_core annotated-types typing-inspection stringzilla simsimd)
pins=()
for p in "${pkgs[@]}"; do
  v=$(python -c "import importlib.metadata as m; print(m.version('$p'))") || { echo "install roadseg first: $p is missing" >&2; exit 2; }
  pins+=("$p==$v")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$kit/wheels" "${pins[@]}"
du -sh "$kit"
