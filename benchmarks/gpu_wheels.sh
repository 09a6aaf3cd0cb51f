#!/usr/bin/env bash
# Download into .whl/ every wheel benchmarks/gpu_suite.sh needs on a bare GPU machine that has
# Python 3.12 (x86-64, manylinux) with torch, numpy, transformers, tokenizers, huggingface-hub,
# safetensors, jaxtyping, rich, pandas, pyarrow, scipy, scikit-learn, matplotlib, tensorboard,
# pytest and the like already installed, and no network. Versions are this project's uv.lock.
#
#   benchmarks/gpu_wheels.sh [DIR]      # default DIR: .whl (about 15 MB)
#
# Install there with:
#   python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.whl}"
mkdir -p "$dest"

# What sae-lens 6, transformer-lens 3, datasets, the prompt server and the CLI import, less what
# the machine has. nltk, babe, plotly-express and transformers-stream-generator are declared by
# sae-lens / transformer-lens but imported by neither at the paths this project uses.
wheels=(
    sae-lens==6.54.12
    transformer-lens==3.9.0
    beartype==0.23.1
    better-abc==0.0.3
    typeguard==4.6.0
    fancy-einsum==0.0.3
    simple-parsing==0.1.9
    docstring-parser==0.18.0
    datasets==5.2.0
    dill==0.4.1
    multiprocess==0.70.19
    tenacity==9.2.1
    python-dotenv==1.2.4
    plotly==7.1.0
    typer==0.29.2
    click==8.5.1
    shellingham==1.5.4
    fastapi==0.165.0
    starlette==1.10.0
    pydantic==2.14.3
    pydantic-core==2.50.4
    annotated-types==0.8.0
    typing-inspection==0.4.5
    opentelemetry-api==1.45.2
    uvicorn==0.54.0
    httpx2==2.16.2
    httpcore2==2.16.2
    truststore==0.10.5
)

# Wheels for the GPU machine's interpreter, whatever this machine runs.
platform_flags=(
    --only-binary=:all: --python-version 3.12 --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
    --platform manylinux1_x86_64
)
python3 -m pip download --quiet --no-deps "${platform_flags[@]}" -d "$dest" "${wheels[@]}"

# wandb: transformer-lens and sae-lens import it at module level but this project never logs to
# it; the 50 MB real one is replaced by a stand-in whose calls do nothing.
python3 - "$dest" <<'EOF'
import base64
import hashlib
import sys
import zipfile
from pathlib import Path

files = {
    "wandb/__init__.py": (
        '"""Stand-in for wandb on machines without it: every call does nothing."""\n\n'
        "run = None\n\n\n"
        "class Histogram:\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        pass\n\n\n"
        "class Artifact:\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        pass\n\n"
        "    def add_file(self, *args, **kwargs):\n"
        "        pass\n\n\n"
        "def init(*args, **kwargs):\n"
        "    return None\n\n\n"
        "def log(*args, **kwargs):\n"
        "    pass\n\n\n"
        "def log_artifact(*args, **kwargs):\n"
        "    pass\n\n\n"
        "def finish(*args, **kwargs):\n"
        "    pass\n"
    ),
    "wandb-0.0.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: wandb\nVersion: 0.0.0\n",
    "wandb-0.0.0.dist-info/WHEEL": (
        "Wheel-Version: 1.0\nGenerator: gpu_wheels.sh\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ),
}


def digest(text: str) -> str:
    raw = hashlib.sha256(text.encode()).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


record = "".join(f"{name},{digest(text)},{len(text.encode())}\n" for name, text in files.items())
record += "wandb-0.0.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(Path(sys.argv[1]) / "wandb-0.0.0-py3-none-any.whl", "w") as wheel:
    for name, text in files.items():
        wheel.writestr(name, text)
    wheel.writestr("wandb-0.0.0.dist-info/RECORD", record)
EOF
du -sh "$dest"
ls "$dest"
