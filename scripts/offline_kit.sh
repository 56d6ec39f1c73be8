#!/usr/bin/env bash
# Pack what an offline GPU machine with PyTorch needs, as wheels of this environment's versions
# (the tested set) for its Python, into KIT_DIR/wheels:
#   train    the prepared training data of the default model (default_model/prepare_data.py)
#            and albumentations with its needs (training on image folders imports no
#            rasterio/shapely); about 34 MiB. Then default_model/train_gpu.sh runs there.
#   predict  rasterio and shapely with their needs (about 40 MiB), for predict and
#            scripts/benchmark_predict.py there (see docs/benchmarks.md).
# There: python3 -m pip install --no-index --no-deps --target /tmp/site KIT_DIR/wheels/*.whl
# and PYTHONPATH=/tmp/site:$PWD.
# Usage: scripts/offline_kit.sh train|predict KIT_DIR [PYTHON_VERSION (3.12)] [--data ../shared/data]
set -euo pipefail
usage="usage: scripts/offline_kit.sh train|predict KIT_DIR [PYTHON_VERSION] [--data DIR]"
what=${1:?$usage}
kit=${2:?$usage}
pyver=${3:-3.12}
shift $(( $# >= 3 ? 3 : 2 ))
here=$(cd "$(dirname "$0")/.." && pwd)
case "$what" in
  train) pkgs=(albumentations albucore pydantic pydantic_core annotated-types typing-inspection stringzilla simsimd) ;;
  predict) pkgs=(rasterio affine cligj click-plugins shapely) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
rm -rf "$kit/data" "$kit/wheels"
mkdir -p "$kit"
if [ "$what" = train ]; then
  python "$here/default_model/prepare_data.py" "$kit/data" "$@"
fi
pins=()
for p in "${pkgs[@]}"; do
  v=$(python -c "import importlib.metadata as m; print(m.version('$p'))") || { echo "install roadseg first: $p is missing" >&2; exit 2; }
  pins+=("$p==$v")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$kit/wheels" "${pins[@]}"
du -sh "$kit"
