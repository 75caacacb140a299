#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
#
# Everything is pinned by requirements/constraints.txt. mmcv 2.1.0 ships no wheel for recent torch, so its ops are
# compiled from the sdist once and the (stripped) wheel is cached outside the repository, in
# ${MG_LLAVA_CACHE:-~/.cache/mg_llava}/wheels/{cpu,cuda}; later runs reuse it. The CUDA ops are built when torch sees
# a GPU (or FORCE_CUDA=1 with nvcc on the PATH); otherwise the CPU ops only. A stamp file makes a re-run a no-op when
# nothing that affects the environment changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=${VENV:-.venv}
python=${PYTHON:-python3.11}
cache=${MG_LLAVA_CACHE:-$HOME/.cache/mg_llava}
constraints=requirements/constraints.txt
mmcv_version=$(sed -n 's/^mmcv==//p' "$constraints")

stamp_inputs=(tools/setup_env.sh "$constraints" setup.py setup.cfg)
stamp=$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$venv/.mg_llava_stamp" ] && [ "$(cat "$venv/.mg_llava_stamp")" = "$stamp" ]; then
    echo "[setup] $venv is up to date"
    exit 0
fi

start=$(date +%s)
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --constraint "$constraints")

# mmcv's setup.py imports pkg_resources (removed in setuptools 82) and builds against the torch in the venv.
"${pip[@]}" --upgrade pip setuptools wheel ninja
"${pip[@]}" torch torchvision
if [ "${FORCE_CUDA:-0}" = 1 ] || "$venv/bin/python" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    variant=cuda
    export FORCE_CUDA=1
else
    variant=cpu
    export FORCE_CUDA=0
fi
wheels="$cache/wheels/$variant"
mkdir -p "$wheels"
pip+=(--find-links "$wheels")

if ! ls "$wheels"/mmcv-"$mmcv_version"-*.whl >/dev/null 2>&1; then
    echo "[setup] building mmcv $mmcv_version with compiled $variant ops (once; 12-25 min on 2 cores)"
    build=$(mktemp -d)
    "$venv/bin/python" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
        -d "$build" "mmcv==$mmcv_version"
    tar -xzf "$build/mmcv-$mmcv_version.tar.gz" -C "$build"
    # torch >= 2.14 headers need C++20; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$mmcv_version/setup.py"
    "${pip[@]}" addict mmengine opencv-python packaging Pillow pyyaml yapf
    # -g0: mmcv compiles with -g, and the debug info (stripped below anyway) is ~60 % of the compile time per file.
    (cd "$build/mmcv-$mmcv_version" && CFLAGS=-g0 CXXFLAGS=-g0 MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
        "$root/$venv/bin/python" -m pip wheel --no-deps --no-build-isolation -w "$build/dist" .)
    # The extension carries ~80 MB of debug info; stripping it leaves a ~2 MB library.
    "$venv/bin/python" -m wheel unpack -d "$build/unpacked" "$build"/dist/mmcv-*.whl
    find "$build/unpacked" -name '_ext*.so' -exec strip --strip-debug {} +
    "$venv/bin/python" -m wheel pack -d "$wheels" "$build"/unpacked/mmcv-*
    rm -rf "$build"
fi

"${pip[@]}" --no-build-isolation -e ".[dev,lmms-eval]"
# lmms-eval (the evaluation harness; `--model mg_llava`): its requirements are the [lmms-eval] extra, less two it
# cannot have here (README, "Installing it"): opencv-python-headless (the cv2 of mmcv's opencv-python) and
# latex2sympy2 (its antlr pin clashes with math-verify's). --no-deps keeps pip from installing them; pip check may
# report exactly those two.
"${pip[@]}" --no-deps lmms-eval
expected_check="lmms-eval 0.7 requires latex2sympy2, which is not installed.
lmms-eval 0.7 requires opencv-python-headless, which is not installed."
if ! check=$("$venv/bin/python" -m pip check); then
    if [ "$(sort <<<"$check")" != "$(sort <<<"$expected_check")" ]; then
        echo "$check"
        exit 1
    fi
    echo "[setup] pip check: only lmms-eval's two documented conflicts (opencv-python-headless, latex2sympy2)"
fi
echo "$stamp" > "$venv/.mg_llava_stamp"
echo "[setup] $venv ready in $(( $(date +%s) - start )) s"
