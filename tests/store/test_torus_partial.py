"""What a running torus job holds in the job ledger (docs/method.md §7, docs/dashboard.md "Torus & plane"): the real
ledger (a fresh SQLite database) and the real core, no worker. The first ``partial`` written with a grid already
spans the whole torus (a coarse pass), later ones refine it, and the last one is the result's grid."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, math
import torch
from sqlalchemy import select
from toroid.store.db import init_db, new_session
from toroid.store.ledger import JobRun, claim, create_job
from toroid.store.models import Job
from toroid.store.params import TorusJob
from toroid.worker.landscape.data import load_dataset
from toroid.worker.landscape.nets import build_model
from toroid.worker.landscape.torus import torus_slice

torch.set_num_threads(1)
init_db()
with new_session() as session:
    job_id = create_job(session, TorusJob(minimum_ids=["a", "b"], resolution=13), publish=False).id
run = JobRun(claim(job_id, worker="test"), min_interval=0.0)
written = []

def progress(fraction, info):
    run.progress(fraction, info)  # writes the job's partial (every report: min_interval 0)
    with new_session() as session:
        partial = session.scalar(select(Job.partial).where(Job.id == job_id))
    if "grid" in partial and (not written or written[-1]["cells"] != partial["grid"]["cells"]):
        written.append(partial["grid"])

data = load_dataset("digits")
a, b = (build_model("mlp", {"widths": [16, 16]}, data, seed=s) for s in (0, 1))
with run:
    result = torus_slice(a, b, data, resolution=13, device="cpu", progress=progress)
print(json.dumps({"written": written, "train_error": result.train_error}))
"""


def test_the_first_written_partial_spans_the_torus_and_the_last_is_the_result(tmp_path):
    (tmp_path / "home").mkdir()
    env = dict(os.environ, TOROID_HOME=str(tmp_path / "home"))
    env.pop("TOROID_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    written, final = out["written"], out["train_error"]
    first = written[0]
    known = [(i, j) for j, row in enumerate(first["train_error"]) for i, v in enumerate(row) if v is not None]
    # 13 x 13: the coarse pass has stride 4, cells 0, 4, 8, 12 on each axis: the four corners and between
    assert first["cells"] == len(known) == 16 and first["stride"] == 4
    assert {i for i, _ in known} == {j for _, j in known} == {0, 4, 8, 12}
    assert set(first["minima"]) == {"A", "B"} and len(first["geodesic"]) == 17  # drawn from the first report
    assert [w["cells"] for w in written] == sorted(w["cells"] for w in written) and written[-1]["cells"] == 169
    assert written[-1]["train_error"] == final
