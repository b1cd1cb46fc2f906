"""SLURM's job states and pending reasons in a user's words (squeue/scontrol spellings)."""

from __future__ import annotations

FINAL = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
}  # fmt: skip

_PENDING = {
    "Resources": "waiting for resources",
    "Priority": "waiting behind jobs of higher priority",
    "Dependency": "waiting for another job to finish",
    "BeginTime": "waiting for its start time",
    "JobHeldUser": "held (released with scontrol release)",
    "JobHeldAdmin": "held by an administrator",
    "ReqNodeNotAvail": "the nodes it needs are not available (down, drained or reserved)",
    "PartitionNodeLimit": "it asks for more nodes than the partition has",
    "PartitionTimeLimit": "its time limit is longer than the partition allows",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is inactive",
    "Reservation": "waiting for a reservation",
    "QOSMaxJobsPerUserLimit": "over the QOS's limit of jobs per user",
    "QOSMaxGRESPerUser": "over the QOS's GPU limit per user",
    "AssocMaxJobsLimit": "over the account's limit of jobs",
    "AssocGrpGRES": "over the account's GPU limit",
    "AssocGrpCpuLimit": "over the account's CPU limit",
    "Licenses": "waiting for licenses",
    "launch failed requeued held": "its launch failed; held by the cluster",
}

_END = {
    "TIMEOUT": "the cluster stopped the job at its time limit before the trainer finished",
    "OUT_OF_MEMORY": "the cluster killed the job: it ran out of memory (ask for more memory "
    "or lower the batch size)",
    "NODE_FAIL": "a compute node running the job failed",
    "PREEMPTED": "the cluster preempted the job for other work",
    "BOOT_FAIL": "the compute node failed to boot",
    "DEADLINE": "the job reached its deadline",
    "REVOKED": "the job was revoked by the cluster",
    "SPECIAL_EXIT": "the job ended in a special exit state",
    "UNKNOWN": "the cluster no longer knows this job",
}


def is_final(state: str) -> bool:
    return state.rstrip("+") in FINAL


def describe_pending(reason: str) -> str:
    """'queued on the cluster: waiting for resources' — never 'running'."""
    words = _PENDING.get(reason)
    if words is None:
        words = "waiting" if reason in ("", "None", "(null)") else f"waiting ({reason})"
    return f"queued on the cluster: {words}"


def describe_end(state: str, reason: str = "") -> str:
    words = _END.get(state, f"the cluster ended the job ({state.lower()})")
    return words + (f" [{reason}]" if reason and reason not in ("None", "(null)") else "")
