# Shared by launch/train_{srun,jsrun,flux,mpiexec}.sh (sourced, not run). Sets:
#   CONFIG OUT DATA[@]  from the arguments  CONFIG.yaml OUT_DIR DATA.h5 [DATA2.h5 ...]
#   PYTHON              the interpreter (default: python3 on PATH; set PYTHON=.venv/bin/python)
#   GPUS_PER_NODE       GPUs seen on this node (nvidia-smi), 0 on CPU nodes
#   RANKS_PER_NODE      one rank per GPU, else RANKS_PER_NODE from the environment (default 1)
#   THREADS_PER_RANK    cores per rank of the allocation (exported as OMP_NUM_THREADS): Slurm's
#                       SLURM_CPUS_PER_TASK, else CORES / ranks per node, where CORES is the
#                       allocation's cores on this node (SLURM_CPUS_ON_NODE; the launcher may set
#                       CORES, e.g. from `flux resource list`), nproc only outside a scheduler
#   NODES               nodes of the allocation (from the scheduler, else 1)
#   TRAIN_ARGV[@]       the training command: python -m mummi_ml train ... --resume
if [[ $# -lt 3 ]]; then
    echo "usage: $0 CONFIG.yaml OUT_DIR DATA.h5 [DATA2.h5 ...]" >&2
    exit 2
fi
CONFIG=$1
OUT=$2
shift 2
DATA=("$@")
PYTHON=${PYTHON:-python3}
if command -v nvidia-smi >/dev/null 2>&1; then
    GPUS_PER_NODE=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
else
    GPUS_PER_NODE=0
fi
if [[ ${GPUS_PER_NODE:-0} -gt 0 ]]; then
    RANKS_PER_NODE=${RANKS_PER_NODE:-$GPUS_PER_NODE}
else
    RANKS_PER_NODE=${RANKS_PER_NODE:-1}
fi
CORES=${CORES:-${SLURM_CPUS_ON_NODE:-$(nproc)}}
if [[ -z ${THREADS_PER_RANK:-} && -n ${SLURM_CPUS_PER_TASK:-} ]]; then
    THREADS_PER_RANK=$SLURM_CPUS_PER_TASK
fi
THREADS_PER_RANK=${THREADS_PER_RANK:-$(( CORES / RANKS_PER_NODE > 0 ? CORES / RANKS_PER_NODE : 1 ))}
export OMP_NUM_THREADS=$THREADS_PER_RANK
echo "train: $RANKS_PER_NODE rank(s) per node, $THREADS_PER_RANK thread(s) per rank" >&2
NODES=${NODES:-${SLURM_JOB_NUM_NODES:-${FLUX_JOB_NNODES:-1}}}
# --resume: continue from OUT/checkpoint.pt when a previous job was stopped (starts afresh if none)
TRAIN_ARGV=("$PYTHON" -m mummi_ml train --config "$CONFIG" --out "$OUT" --resume
            --set "train.num_threads=$THREADS_PER_RANK" --data "${DATA[@]}")
