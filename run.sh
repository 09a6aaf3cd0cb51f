#!/usr/bin/env bash
# Enter the image. Flags before `--` go to docker run, words after it are the command to run:
#   ./run.sh --gpus all -v /abs/host/results:/results
#   ./run.sh --gpus all -v /abs/host/results:/results -- train-topk-sae-toy --device cuda
set -euo pipefail
image="${SAE_HACKING_IMAGE:-sae-hacking}"
docker_args=()
while [ "$#" -gt 0 ]; do
    if [ "$1" = "--" ]; then
        shift
        break
    fi
    docker_args+=("$1")
    shift
done
tty_flags=()
if [ -t 0 ]; then
    tty_flags=(-it)
fi
exec docker run --rm "${tty_flags[@]}" "${docker_args[@]}" "$image" "$@"
