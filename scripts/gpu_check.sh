#!/usr/bin/env bash
# One prepared GPU session: the PyTorch golden fixture, the benchmark, and the GPU runs of the
# gradient-flow and memory-horizon experiments. Writes everything under $OUT (default ./gpu_out).
# Needs jax (CUDA), flax, optax, numpy, pandas, matplotlib, pyyaml, torch; hydra-core, omegaconf
# and antlr4 can come as wheels in .whl/ (installed to /tmp/site).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
nvidia-smi -L | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__)" | tee -a "$OUT/device.txt"

echo "== golden fixture"; date
timeout 60 python3 scripts/make_torch_golden.py "$OUT/torch_golden.npz" > "$OUT/golden.log" 2>&1
tail -3 "$OUT/golden.log"

echo "== benchmark (training step: rnnlab fused and autodiff, Flax, cuDNN; unroll 1 and 8)"; date
GPU_SHAPES="64,128,32,128;32,512,64,256;256,1000,1,128;512,256,128,512"
for u in 1 8; do
  timeout 200 python3 scripts/bench.py --device gpu --reps 10 --parts step,members \
    --shapes "$GPU_SHAPES" --unroll $u --out "$OUT/bench_gpu_unroll$u.md" \
    --json "$OUT/bench_gpu_unroll$u.json" > "$OUT/bench_gpu_unroll$u.log" 2>&1
  tail -24 "$OUT/bench_gpu_unroll$u.log"
done

sweep() {  # name, timeout, overrides...
  local name=$1 limit=$2; shift 2
  echo "== $name"; date
  timeout "$limit" python3 -m rnnlab.run -m "$@" logger.wandb.mode=disabled logger.plots=false \
    hydra.sweep.dir=/tmp/sweeps/$name > "$OUT/$name.log" 2>&1
  grep -E "^\[rnnlab\] (copy|adding|temporal)|FAILED" "$OUT/$name.log" | head -40
  tar czf "$OUT/$name.tgz" --exclude=wandb -C /tmp/sweeps "$name"
}
sweep gradient_flow 200 +experiment=gradient_flow
sweep memory_horizon_gpu 110 +experiment=memory_horizon task=adding task.length=100,500 \
  train.steps=2000 gradients.every=1000
date
