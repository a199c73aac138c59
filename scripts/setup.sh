#!/usr/bin/env bash
# Creates .venv with mlx-rvc installed (editable, with test tools) and, on Debian/Ubuntu as root,
# the system packages it uses: OpenBLAS (fast matmuls for MLX on Linux), libsndfile, ffmpeg, and
# Chromium for the web app's browser tests (Debian), PortAudio for `mlx-rvc live`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1 || need+=(libopenblas0-pthread)
  ldconfig -p 2>/dev/null | grep -q libsndfile.so.1 || need+=(libsndfile1)
  command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)  # decodes m4a/opus/webm inputs
  ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || need+=(libportaudio2)  # mlx-rvc live
  # the web app's browser tests drive Debian's Chromium (Ubuntu's package is only a snap stub)
  if grep -qx 'ID=debian' /etc/os-release 2>/dev/null && ! command -v chromium >/dev/null 2>&1; then
    need+=(chromium chromium-driver)
  fi
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
      echo "note: install ${need[*]} (sudo apt-get install ${need[*]}) for fast matmuls, decoding and the browser tests; continuing without" >&2
    fi
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -q -e '.[test,ui,live]'
# MLX_BACKEND=cuda12|cuda13: replace MLX's Linux CPU backend by its CUDA build of the same version
# (both ship mlx/lib/libmlx.so, so only one may be installed)
case "${MLX_BACKEND:-cpu}" in
  cpu) ;;
  cuda12|cuda13)
    ver=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mlx"))')
    "$VENV/bin/python" -m pip uninstall -q -y mlx-cpu
    "$VENV/bin/python" -m pip install -q "mlx-${MLX_BACKEND/cuda/cuda-}==$ver"
    ;;
  *) echo "MLX_BACKEND must be cpu, cuda12 or cuda13, got $MLX_BACKEND" >&2; exit 2 ;;
esac
