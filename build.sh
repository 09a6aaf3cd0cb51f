#!/usr/bin/env bash
# Build the image and tag it sae-hacking (or the tag given as the first argument).
set -euo pipefail
cd "$(dirname "$0")"
docker build -t "${1:-sae-hacking}" .
