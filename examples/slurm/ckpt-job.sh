#!/bin/bash
# A Slurm batch job that outlives its time limit: it runs PROG under ckpt, and when Slurm
# warns that the time is nearly up (or someone asks with `scancel --signal=USR1 --batch JOB`),
# PROG is stopped at a last checkpoint and the job requeues itself. Each later start of the
# job restarts PROG from its newest complete image, until PROG ends; its exit status is then
# the job's.
#
#   sbatch [sbatch options] examples/slurm/ckpt-job.sh PROG [ARGS...]
#
# Images live in the submit directory, as ckpt-job-JOBID.img (a requeued job keeps its job ID;
# another job, even from the same script and directory, has its own). Settings, from the
# environment at submission (sbatch passes it on) or edited here:
#   CKPT_JOB_DIR       where the images go (default: the directory sbatch was run in)
#   CKPT_JOB_INTERVAL  also take a checkpoint every so many seconds (default: only the last)
#   CKPT_JOB_SELF_CONTAINED=1  images carry the program's and libraries' code too (larger):
#                      for nodes whose installed software differs
#   CKPT               the ckpt command (default: ckpt from PATH)
# Remove the images once the job has ended: they hold the program's whole memory.
#
# A requeue may land on another node. That works with the defaults when the image directory
# is shared between the nodes (the submit directory usually is) and the nodes have the same
# software at the same paths: the libraries may be other copies of the same bytes. Files the
# program kept in a node's own /tmp or local scratch are not on the next node: its restart
# names each of them and is refused. A CPU lacking a feature of the old node's, or another
# kernel build whose vdso differs, is refused with the reason.
#
# The warning must leave time for the last checkpoint (about the time to write the program's
# memory once). `--open-mode=append` keeps the output of every start in one file.
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --signal=B:USR1@60
set -euo pipefail
if [ $# -eq 0 ]; then
    echo "usage: sbatch [sbatch options] $0 PROG [ARGS...]" >&2
    exit 2
fi
: "${SLURM_JOB_ID:?run this script with sbatch}"
dir=${CKPT_JOB_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
opts=(--image "$dir/ckpt-job-$SLURM_JOB_ID.img" --requeue "scontrol requeue $SLURM_JOB_ID")
if [ -n "${CKPT_JOB_INTERVAL:-}" ]; then
    opts+=(--interval "$CKPT_JOB_INTERVAL")
fi
if [ "${CKPT_JOB_SELF_CONTAINED:-0}" = 1 ]; then
    opts+=(--self-contained)
fi
# ckpt takes this shell's place, so Slurm's signal reaches it: it restarts the newest image
# (or starts PROG), and on SIGUSR1 takes the last checkpoint and runs the requeue command.
exec "${CKPT:-ckpt}" job "${opts[@]}" -- "$@"
