"""One typed settings object, read once from the environment (MEDSYNTH_*) and passed down."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    secret_key: str
    max_upload_bytes: int = 1024**3  # a 512×512×1000 int16 CT series is 0.5 GiB
    # Accounts (issue 16). A login session ends after session_max_age_s (absolute) or after
    # session_idle_s without a request; cookie_secure sends the cookie over HTTPS only.
    session_max_age_s: int = 14 * 24 * 3600
    session_idle_s: int = 12 * 3600
    cookie_secure: bool = False
    # Failed logins: free attempts per account / per client address, then a back-off that
    # doubles from login_backoff_s up to login_backoff_max_s; forgotten after login_forget_s.
    login_free_attempts: int = 5
    login_free_attempts_ip: int = 20
    login_backoff_s: float = 1.0
    login_backoff_max_s: float = 900.0
    login_forget_s: int = 24 * 3600
    # Images generated on demand: at most this many run at once, wait in the queue, per user
    # (running or waiting), and per request.
    generate_max_running: int = 1
    generate_max_waiting: int = 4
    generate_per_user: int = 1
    generate_max_images: int = 64
    # Submitted work (jobs, metric and utility runs) estimated to take longer is refused (422).
    max_job_hours: float = 168.0
    # Training jobs (issue 4): how many trainer subprocesses may run at once.
    max_concurrent_jobs: int = 1
    python_executable: str = field(default_factory=lambda: os.environ.get("MEDSYNTH_PYTHON", ""))
    # Where trainer commands run (issue 20): "local" (children of this app) or "slurm" (batch
    # jobs; the data folder must then be on a filesystem the compute nodes share). The slurm_*
    # values become #SBATCH lines; a job's GPUs, nodes and time limit come from its form.
    executor: str = "local"
    slurm_partition: str = ""
    slurm_account: str = ""
    slurm_qos: str = ""
    slurm_gpus_per_node: int = 1  # the job form's default on a cluster
    slurm_nodes: int = 1
    slurm_cpus: int = 0  # --cpus-per-task; 0: the partition's default
    slurm_mem: str = ""  # --mem, e.g. "64G"; empty: the partition's default
    slurm_time_limit: str = ""  # --time when the form leaves it empty, e.g. "24:00:00"
    slurm_signal_margin_s: int = 300  # SIGTERM this long before the limit: snapshot, requeue
    slurm_extra: str = ""  # more #SBATCH lines, separated by ';' (e.g. "--constraint=a100")
    slurm_env_setup: str = ""  # a shell line before the command, e.g. "source /opt/ms/bin/activate"
    slurm_max_jobs: int = 100  # submitted at once (the scheduler queues them)
    slurm_max_segments: int = 50  # automatic requeues of one job after time limits
    # Metric runs (issue 5): few at once and at a lower CPU priority, so training keeps going.
    max_concurrent_metric_runs: int = 1
    metric_run_nice: int = 10  # added to the metrics process's niceness (0: same as the app)
    # A custom torch-fidelity feature extractor for every run (`--extractor-module` of
    # `python -m trainer metrics`), e.g. "mypkg.radnet:register"; empty: the library defaults.
    metrics_extractor_module: str = ""
    metrics_feature_extractor: str = ""
    # DICOM ingest (issue 12): keep the uploaded originals (they hold patient identifiers) or
    # not; the salt of the patient/study/series hashes (empty: derived from secret_key); the
    # most bytes an upload may decompress to (zip members, .nii.gz), checked before writing.
    keep_dicom_originals: bool = False
    deid_salt: str = ""
    max_decompressed_bytes: int = 1024**3
    # Tests only (issue 22): hold every review request this long, as a loaded server would;
    # 0 (the default, never read from the environment) means no delay.
    review_delay_ms: int = 0

    @property
    def volumes_dir(self) -> Path:
        return self.data_dir / "volumes"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def ensure_dirs(self) -> None:
        for d in (
            self.data_dir,
            self.volumes_dir,
            self.uploads_dir,
            self.datasets_dir,
            self.runs_dir,
            self.tmp_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)


def _secret_key(data_dir: Path) -> str:
    """A stable signing key: from MEDSYNTH_SECRET_KEY, else created once in the data folder."""
    if key := os.environ.get("MEDSYNTH_SECRET_KEY"):
        return key
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _flag(value: str | None, default: bool = False) -> bool:
    return default if value is None or value == "" else value.lower() in ("1", "true", "yes")


def _account_settings(env: dict[str, str]) -> dict:
    """Sessions, login throttling and generation limits (issue 16), from MEDSYNTH_*."""
    names = {
        "session_max_age_s": int, "session_idle_s": int, "login_free_attempts": int,
        "login_free_attempts_ip": int, "login_backoff_s": float, "login_backoff_max_s": float,
        "login_forget_s": int, "generate_max_running": int, "generate_max_waiting": int,
        "generate_per_user": int, "generate_max_images": int, "max_job_hours": float,
    }  # fmt: skip
    out: dict = {"cookie_secure": _flag(env.get("MEDSYNTH_COOKIE_SECURE"))}
    for name, kind in names.items():
        if (value := env.get("MEDSYNTH_" + name.upper())) not in (None, ""):
            out[name] = kind(value)
    return out


def _executor_settings(env: dict[str, str]) -> dict:
    """MEDSYNTH_EXECUTOR and MEDSYNTH_SLURM_* (issue 20)."""
    executor = (env.get("MEDSYNTH_EXECUTOR") or "local").strip().lower()
    if executor not in ("local", "slurm"):
        raise ValueError(f"MEDSYNTH_EXECUTOR must be 'local' or 'slurm', not {executor!r}")
    out: dict = {"executor": executor}
    kinds = {"partition": str, "account": str, "qos": str, "gpus_per_node": int, "nodes": int,
             "cpus": int, "mem": str, "time_limit": str, "signal_margin_s": int, "extra": str,
             "env_setup": str, "max_jobs": int, "max_segments": int}  # fmt: skip
    for name, kind in kinds.items():
        if (value := env.get("MEDSYNTH_SLURM_" + name.upper())) not in (None, ""):
            out["slurm_" + name] = kind(value)
    return out


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("MEDSYNTH_DATA", "./data")).resolve()
    url = env.get("MEDSYNTH_DATABASE_URL") or f"sqlite:///{data_dir / 'medsynth.db'}"
    return Settings(
        data_dir=data_dir,
        database_url=url,
        secret_key=env.get("MEDSYNTH_SECRET_KEY") or _secret_key(data_dir),
        max_upload_bytes=int(env.get("MEDSYNTH_MAX_UPLOAD_BYTES", 1024**3)),
        **_account_settings(env),
        max_concurrent_jobs=int(env.get("MEDSYNTH_MAX_CONCURRENT_JOBS", 1)),
        **_executor_settings(env),
        max_concurrent_metric_runs=int(env.get("MEDSYNTH_MAX_CONCURRENT_METRIC_RUNS", 1)),
        metric_run_nice=int(env.get("MEDSYNTH_METRIC_RUN_NICE", 10)),
        metrics_extractor_module=env.get("MEDSYNTH_METRICS_EXTRACTOR_MODULE", ""),
        metrics_feature_extractor=env.get("MEDSYNTH_METRICS_FEATURE_EXTRACTOR", ""),
        keep_dicom_originals=env.get("MEDSYNTH_KEEP_DICOM_ORIGINALS", "") in ("1", "true", "yes"),
        deid_salt=env.get("MEDSYNTH_DEID_SALT", ""),
        max_decompressed_bytes=int(env.get("MEDSYNTH_MAX_DECOMPRESSED_BYTES", 1024**3)),
    )
