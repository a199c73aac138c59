#!/usr/bin/env bash
# The GPU checks in one run, for a machine with MLX's CUDA build (or Metal) importable and this
# repository as the working directory: versions, the golden fixtures in both precisions, the model
# tests (every form), mlx-rvc's benchmarks (synthesizer, whole pipeline cold and warm, the length
# curve, precision) and, where torch and a reference checkout are there, the PyTorch reference on
# the same GPU. Everything goes to REPORT_DIR (default ./gpu-report): report.log and JSON files.
#
#   REPORT_DIR=out RVC_WEBUI=path/to/RVC-WebUI bash benchmarks/gpu_report.sh
#
# Sections run in order of importance, each under its own time limit, and a failing one does not
# stop the rest. PY picks the interpreter (default python3).
set -u
OUTDIR=${REPORT_DIR:-gpu-report}
PY=${PY:-python3}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
log="$OUTDIR/report.log"
: > "$log"

section() {  # section NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date +%T))" | tee -a "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" >> "$log" 2>&1
  echo "-- $name: exit $? after $((SECONDS - t0)) s" | tee -a "$log"
}

json() {  # json FILE LIMIT COMMAND...: the command's stdout to FILE, stderr to the log
  local file=$1 limit=$2
  shift 2
  echo "== $file ($(date +%T))" | tee -a "$log"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUTDIR/$file" 2>> "$log"
  echo "-- $file: exit $? after $((SECONDS - t0)) s" | tee -a "$log"
}

section info 60 $PY -m mlx_rvc info
section device_info 30 $PY -c "import mlx_rvc, mlx.core as mx; print(mx.device_info())"
section nvidia-smi 10 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fixtures=$($PY -c "import json; print(' '.join('tests/fixtures/' + f for f in json.load(open('tests/fixtures/fixtures.json'))['fixtures']))")
json parity_float32.json 120 $PY -m mlx_rvc parity --json $fixtures
json parity_tf32.json 120 env MLX_RVC_PRECISION=tf32 $PY -m mlx_rvc parity --json $fixtures
json bench_pipeline_30s.json 150 $PY -m mlx_rvc bench pipeline --lengths 30 --repeats 5 --json
json profile.json 120 $PY benchmarks/profile_models.py --seconds 30
if [ -n "${RVC_WEBUI:-}" ] && $PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  section reference 240 $PY benchmarks/reference/bench_reference_gpu.py --rvc "$RVC_WEBUI" --seconds 30 \
    --json "$OUTDIR/reference.json"
fi
section tests 240 $PY -m pytest -q -x -p no:cacheprovider tests/test_layers.py tests/test_synthesizer.py \
  tests/test_rmvpe.py tests/test_hubert.py tests/test_fftconv.py \
  "tests/test_pipeline.py::test_end_to_end_matches_reference_at_every_stage"
json bench_precision.json 120 $PY -m mlx_rvc bench precision --seconds 30 --repeats 3 --json
json bench_curve.json 300 $PY -m mlx_rvc bench pipeline --lengths 5,30,120,600 --repeats 1 --json
echo "== done ($(date +%T))" | tee -a "$log"
