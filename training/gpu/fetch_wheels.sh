#!/usr/bin/env bash
# Fetch, on a machine with network, the cp312 x86_64 wheels that Megatron-Bridge 0.6.2 needs on a
# GPU machine that has torch, transformers and the usual stack but no megatron packages and no
# network (the lent device image). About 37 MiB: under the 64 MiB a device call can carry.
# Usage: training/gpu/fetch_wheels.sh [DEST]   (default .whl in the repo root; git-ignored)
set -euo pipefail
dest=${1:-.whl}
mkdir -p "$dest"
plat=()
for p in manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 \
  manylinux_2_31_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64 manylinux_2_39_x86_64 \
  manylinux1_x86_64; do plat+=(--platform "$p"); done
# Versions a probe proved together (see shared notes); Bridge's own hard imports first.
pkgs=(
  megatron-core==0.19.2 megatron-bridge==0.6.2 megatron-energon==7.4.1
  nvidia-resiliency-ext==0.6.0 nvidia-modelopt==0.47.0 pulp==3.3.2 multi-storage-client==1.3.1
  omegaconf==2.3.0 hydra-core==1.3.8 diffusers==0.42.1 datasets==5.2.0 defusedxml==0.7.1
  pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
  opentelemetry-api==1.45.2 dill==0.4.1 multiprocess==0.70.19 jsonschema==4.26.0
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 lark==1.3.1
  braceexpand==0.1.7 bracex==3.2.2 wcmatch==10.2.1 webdataset==1.0.2 filetype==1.2.0
  deprecation==2.1.0 cffi==2.1.1 pycparser==3.12 xattr==1.3.0 rapidyaml==0.15.2
)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${plat[@]}" -d "$dest" "${pkgs[@]}"
# antlr4-python3-runtime 4.9.3 (omegaconf/hydra need exactly 4.9.x) is an sdist on PyPI: build it.
if ! ls "$dest"/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1; then
  python3 -m pip wheel -q --no-deps -w "$dest" antlr4-python3-runtime==4.9.3
fi
du -sh "$dest"
