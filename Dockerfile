# CUDA runtime base: torch's own wheels bring the CUDA libraries, the base brings the driver glue.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_INSTALL_DIR=/opt/uv-python \
    SAE_HACKING_RESULTS=/results \
    HF_HOME=/results/.cache/huggingface \
    PATH="/app/.venv/bin:/root/.local/bin:${PATH}"

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl git \
    && rm -rf /var/lib/apt/lists/*

COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /uvx /usr/local/bin/

WORKDIR /app
# Dependencies first, so editing the source does not re-download torch.
COPY pyproject.toml uv.lock README.md ./
RUN uv python install 3.11 && uv sync --locked --no-install-project --no-dev
COPY src ./src
RUN uv sync --locked --no-dev

VOLUME ["/results"]
CMD ["bash"]
