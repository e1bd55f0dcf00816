#!/usr/bin/env bash
# Multi-node H-DETR training with torchrun's rendezvous, under SLURM.
#
#   sbatch --nodes=2 --gpus-per-node=8 scripts/slurm_multinode.sh coco_r50_hybrid_branch_12ep \
#          --set data.root=/datasets/coco --set model.pretrained_backbone=/weights/resnet50.pth
#
# One torchrun per node (srun --ntasks-per-node=1); torchrun starts one process per GPU and
# the c10d rendezvous on the first node joins them: RANK / WORLD_SIZE / LOCAL_RANK reach
# `hdetr train`, which uses NCCL between GPUs (gloo on CPU-only nodes). train.batch_size is
# per GPU, as in the official code (2 x 16 GPUs = total batch 32).
#
# OUTPUT_DIR must be on a filesystem every node sees: rank 0 writes the checkpoints and every
# rank reads checkpoint_last.pth on --resume. Requeued jobs resume exactly (same data order,
# optimiser, schedule and random states): --resume continues checkpoint_last.pth when the
# folder has one and starts afresh when it has none.
#
# Without SLURM, run the same line on every node (no node ranks needed with c10d rendezvous):
#   torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST_OF_NODE_0:29500 \
#            --rdzv_id=myrun --module hdetr.cli train --preset PRESET --output-dir SHARED/DIR --resume
#SBATCH --job-name=hdetr
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
#SBATCH --requeue
set -euo pipefail

PRESET=${1:?usage: sbatch scripts/slurm_multinode.sh PRESET [hdetr train options]}
shift
OUTPUT_DIR=${OUTPUT_DIR:-runs/${PRESET}}
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-8}}
NNODES=${SLURM_NNODES:-1}
# sed reads every line: with pipefail, head could end the pipe early and scontrol fail with SIGPIPE
MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | sed -n 1p)
MASTER_PORT=${MASTER_PORT:-29500}

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

srun --kill-on-bad-exit=1 torchrun \
  --nnodes="${NNODES}" \
  --nproc_per_node="${GPUS_PER_NODE}" \
  --rdzv_backend=c10d \
  --rdzv_endpoint="${MASTER_ADDR}:${MASTER_PORT}" \
  --rdzv_id="${SLURM_JOB_ID}" \
  --module hdetr.cli train \
  --preset "${PRESET}" \
  --output-dir "${OUTPUT_DIR}" \
  --resume \
  "$@"
