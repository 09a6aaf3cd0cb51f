#!/usr/bin/env bash
# Everything this toolkit proves and measures on a GPU, in one command of under 8 minutes on an
# H100: installs the wheels carried in .whl/ (benchmarks/gpu_wheels.sh), runs the gpu test tier,
# then the GPU benchmarks, and writes one Markdown report, $OUT/gpu_report.md, with the pytest log
# beside it. Each step runs under its own timeout, so one hang cannot eat the whole budget.
#
#   benchmarks/gpu_suite.sh                # on a GPU machine (a bare one: Python 3.12 and torch)
#   benchmarks/gpu_suite.sh --cpu-smoke    # without a GPU: the same steps on the CPU, tiny sizes
#
# Environment: OUT (default ./gpu-out), PYTHON (default python3), SKIP_WHEELS=1 to use the
# interpreter's own packages instead of .whl/, PYTEST_ARGS (extra pytest arguments, e.g. -k ...).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD

smoke=0
if [ "${1:-}" = "--cpu-smoke" ]; then
    smoke=1
elif [ -n "${1:-}" ]; then
    echo "usage: benchmarks/gpu_suite.sh [--cpu-smoke]" >&2
    exit 2
fi
OUT="${OUT:-$root/gpu-out}"
mkdir -p "$OUT"
report="$OUT/gpu_report.md"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export MPLBACKEND=Agg TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false
suite_started=$SECONDS

log() { echo "[gpu_suite $((SECONDS - suite_started))s] $*"; }

if [ "${SKIP_WHEELS:-0}" != 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
    wheels=(.whl/*.whl)
    log "installing ${#wheels[@]} carried wheels into /tmp/site"
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { log "wheel install failed"; exit 1; }
    export PYTHONPATH="$root/src:/tmp/site:$root${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$root/src:$root${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    echo "# GPU suite report"
    echo
    "$py" - <<'EOF'
import platform, subprocess, torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device (CPU smoke)"
print(f"- device: {name}")
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    print(f"- nvidia-smi: {smi.stdout.strip() or smi.stderr.strip()}")
except (OSError, subprocess.SubprocessError) as error:
    print(f"- nvidia-smi: unavailable ({type(error).__name__})")
print(f"- torch {torch.__version__} (CUDA {torch.version.cuda}), Python {platform.python_version()}, {platform.machine()}")
EOF
    echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- mode: $([ $smoke = 1 ] && echo 'CPU smoke (tiny sizes; the tier with the CPU standing in for CUDA)' || echo GPU)"
    echo
    echo "## Steps"
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---:|"
} >"$report"
steps_table="$OUT/.steps.md"
: >"$steps_table"

# run_step NAME TIMEOUT_S COMMAND...: run with a timeout, record status and time.
run_step() {
    local name=$1 limit=$2
    shift 2
    log "start: $name (timeout ${limit}s)"
    local started=$SECONDS status
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="timed out after ${limit}s" ;;
        *) status="failed (exit $rc)" ;;
    esac
    log "end: $name: $status in $((SECONDS - started))s"
    echo "| $name | $status | $((SECONDS - started)) |" >>"$steps_table"
}

if [ $smoke = 1 ]; then
    export SAE_HACKING_GPU_TIER_ON_CPU=1
    device=cpu
    toy_args=(--device cpu --batch-sizes "256,4096" --samples "25600,409600" --variants plain)
    gemma_args=(--device cpu --smoke)
    letter_args=(--device cpu --smoke)
    limits=(1500 600 600 600 600 600)
else
    device=cuda
    toy_args=(--device cuda)
    gemma_args=(--device cuda)
    letter_args=(--device cuda)
    limits=(210 100 40 80 60 150)
fi

xdist=()
if "$py" -c "import xdist" 2>/dev/null; then
    xdist=(-n 6)  # CPU halves of the comparisons and compilations overlap with GPU work
fi
read -r -a extra <<<"${PYTEST_ARGS:-}"
run_step "gpu test tier (pytest -m gpu)" "${limits[0]}" \
    "$py" -m pytest -p no:cacheprovider -m gpu tests/gpu "${xdist[@]}" "${extra[@]}" -W default -rfEs \
    --durations=15 --junitxml="$OUT/pytest_gpu.xml" -o junit_family=xunit1 \
    2>&1 | tee "$OUT/pytest_gpu.log"

bench_log="$OUT/benchmarks.log"
run_step "toy training vs sae-lens" "${limits[1]}" \
    "$py" benchmarks/gpu_toy_training.py "${toy_args[@]}" --report "$OUT/.toy.md" 2>&1 |
    tee -a "$bench_log"
for step in cooccurrence ablation pairs; do
    case $step in
        cooccurrence) limit=${limits[2]} ;;
        ablation) limit=${limits[3]} ;;
        *) limit=${limits[4]} ;;
    esac
    run_step "Gemma shapes: $step" "$limit" \
        "$py" benchmarks/gpu_gemma_shapes.py "${gemma_args[@]}" --steps "$step" \
        --report "$OUT/.gemma_$step.md" 2>&1 | tee -a "$bench_log"
done
run_step "Gemma shapes: first-letter evaluation" "${limits[5]}" \
    "$py" benchmarks/gpu_first_letter.py "${letter_args[@]}" --report "$OUT/.gemma_first_letter.md" \
    2>&1 | tee -a "$bench_log"

{
    cat "$steps_table"
    echo
    echo "Total: $((SECONDS - suite_started)) s on device '$device'."
    echo
    echo "## gpu test tier"
    echo
    echo '```'
    grep -E "^(FAILED|ERROR|SKIPPED)|passed|failed|error" "$OUT/pytest_gpu.log" | tail -40
    echo '```'
    echo
    echo "Slowest tests:"
    echo
    echo '```'
    sed -n '/slowest .*durations/,/^$/p' "$OUT/pytest_gpu.log" | head -20
    echo '```'
    echo
    echo "## Benchmarks"
    echo
    for table in "$OUT/.toy.md" "$OUT/.gemma_cooccurrence.md" "$OUT/.gemma_ablation.md" \
        "$OUT/.gemma_pairs.md" "$OUT/.gemma_first_letter.md"; do
        if [ -s "$table" ]; then cat "$table"; else echo "(no table: see the step's status)"; fi
        echo
    done
} >>"$report"
rm -f "$steps_table" "$OUT"/.toy.md "$OUT"/.gemma_*.md
log "report: $report"
cat "$report"
