#!/usr/bin/env bash
# Train under slurm: srun starts one task per GPU, on as many nodes as needed.
#
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [GPUS] [train.py options]
#
# GPUS (default: the GPUS environment variable, else 8) is the total number
# of tasks. Environment variables:
#   GPUS_PER_NODE  tasks per node (default: min(GPUS, 8))
#   CPUS_PER_TASK  CPU cores per task (default: 5)
#   GRES           generic resources per node (default: gpu:GPUS_PER_NODE);
#                  set it empty (GRES=) on CPU-only partitions
#   SRUN_ARGS      extra srun options, e.g. "--time=24:00:00"
#   MASTER_PORT    rendezvous port on the first node (default: 29500)
#   PYTHON         interpreter (default: python)
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG [GPUS] [train.py options]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
GPUS=${GPUS:-8}
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
    GPUS=$1
    shift
fi
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: GPUS must be a positive integer (total tasks), got '$GPUS'" >&2
    exit 2
fi

GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:$GPUS_PER_NODE}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PYTHONPATH="$(dirname "$TOOLS_DIR")${PYTHONPATH:+:$PYTHONPATH}"

GRES_OPTION=()
if [ -n "$GRES" ]; then
    GRES_OPTION=(--gres="$GRES")
fi

# SRUN_ARGS is split on whitespace on purpose: it carries several options.
# shellcheck disable=SC2086
exec srun \
    --partition="$PARTITION" \
    --job-name="$JOB_NAME" \
    "${GRES_OPTION[@]}" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$TOOLS_DIR/train.py" "$CONFIG" --launcher slurm "$@"
