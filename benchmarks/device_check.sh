#!/usr/bin/env bash
# The device check of issue 11, for a machine with a GPU (e.g. the project's lent H200): the GPU
# tests and the paper-scale benchmark on CUDA, results under $OUT. Run from the repository root:
#     OUT=/some/folder bash benchmarks/device_check.sh
# Needs python3 with a CUDA torch, numpy, scipy, networkx, tqdm; plotly is not needed (the
# figure and report tests are not run here). Nothing is installed: the tree is used in place.
set -u
OUT=${OUT:-results-device}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:$(pwd)
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-')" > "$OUT/torch.txt" 2>&1
python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_device.py tests/test_model.py tests/test_hessian.py \
    > "$OUT/pytest-gpu.txt" 2>&1
echo "pytest exit $?" >> "$OUT/pytest-gpu.txt"
timeout 420 python3 benchmarks/bench_paper.py --device cuda --skip pele flow spectrum --widths 30 70 --starts 1024 \
    --out "$OUT/paper-cuda.json" > "$OUT/bench-cuda.txt" 2>&1
echo "bench exit $?" >> "$OUT/bench-cuda.txt"
timeout 150 python3 benchmarks/bench_paper.py --device cuda --quick --skip throughput pele fidelity ts flow \
    --out "$OUT/spectrum-cuda.json" > "$OUT/bench-spectrum-cuda.txt" 2>&1
echo "bench exit $?" >> "$OUT/bench-spectrum-cuda.txt"
timeout 120 python3 benchmarks/bench_net.py --device cuda --set net.dataset=data/digits.npz --set dtype=float32 \
    --out "$OUT/net-cuda.json" > "$OUT/bench-net-cuda.txt" 2>&1
echo "bench exit $?" >> "$OUT/bench-net-cuda.txt"
timeout 150 python3 benchmarks/bench_lambda_batch.py --set device=cuda --out "$OUT/lambda-batch-cuda.json" > "$OUT/bench-lambda-batch-cuda.txt" 2>&1
echo "bench exit $?" >> "$OUT/bench-lambda-batch-cuda.txt"
