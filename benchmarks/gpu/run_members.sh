#!/bin/bash
# Train committee members at once on a lent GPU machine (the `device` tool's `run`), one process each.
#   bash benchmarks/gpu/run_members.sh CONFIG FIRST LAST STOP_AFTER_S
# Before the call (on the CPU machine): put the data files the config reads under .gpu/data (the layout of
# ../shared/data), the wheels of ase, vesin and spglib for the device's Python (3.12 in 2026-12) under .whl,
# exclude both in .git/info/exclude and carry them; keep the tracked tree under 64 MiB (pretrained/ is
# larger: untrack it for the call, `git reset` after). The device image has torch and lightning but no
# pymatgen: benchmarks/gpu/pymatgen_shim stands in for the two calls the MatTen loader makes (checked
# bit-identical on elasticity_n100.json). Members write runs/... as `etgnn train` does; whatever finished
# by STOP_AFTER_S comes back in $OUT/members.tgz (checkpoints left out).
set -u
config=$1 first=$2 last=$3 stop=$4
for w in .whl/*.whl; do python3 -m pip install -q --no-index --no-deps --target /tmp/site "$w" 2>&1 | tail -1; done
export PYTHONPATH=/tmp/site:$PWD/benchmarks/gpu/pymatgen_shim:$PWD ETGNN_DATA=$PWD/.gpu/data OMP_NUM_THREADS=1
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available())"
mkdir -p runs/logs
for m in $(seq "$first" "$last"); do
  python3 -m etgnn_core.cli train "$config" --member "$m" > "runs/logs/gpu_m$m.log" 2>&1 &
done
( sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv ) &
end=$((SECONDS + stop))
while [ $SECONDS -lt $end ] && [ -n "$(jobs -r -p | head -1)" ]; do sleep 5; done
out=$(python3 -c "from etgnn_core.train.config import TrainConfig; print(TrainConfig.from_file('$config').output)")
tar czf "$OUT/members.tgz" --exclude='*/checkpoints' "$out" runs/logs
ls -la "$OUT"
