#!/usr/bin/env bash
# GPU discovery script for Spark (spark.executor.resource.gpu.discoveryScript): prints the GPUs this
# executor may use as {"name": "gpu", "addresses": ["0", "1", ...]}. Spark then hands each task the
# addresses it was assigned (TaskContext.resources()["gpu"].addresses).
set -euo pipefail
if [[ -n "${RETRIEVAL_FAKE_GPUS:-}" ]]; then
  # For tests on CPU machines: RETRIEVAL_FAKE_GPUS=2 -> addresses 0 and 1.
  addrs=$(seq -s '","' 0 $((RETRIEVAL_FAKE_GPUS - 1)))
else
  addrs=$(nvidia-smi --query-gpu=index --format=csv,noheader | sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/","/g')
fi
echo "{\"name\": \"gpu\", \"addresses\": [\"$addrs\"]}"
