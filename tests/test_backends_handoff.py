"""The handoff backend: picks handed to a workflow manager through an outbox, answered by
acknowledgements; slots = handed over and not answered; exactly-once across kill -9 of the
selector side and of the consumer side. (The backend contract suite runs it too.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mummi_ml.backends import (
    HandoffConsumer,
    HandoffError,
    HandoffRecord,
    JobEmitter,
    JobsConfig,
    JobState,
    make_backend,
)
from mummi_ml.cli import main
from mummi_ml.patch import PatchBatch, read_patches

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def make_patch(pid: int, name: str = "", cls: int = -1, dist: float = float("nan")
               ) -> PatchBatch:
    x = np.random.default_rng(pid).random((1, 37, 37, 14), dtype=np.float32)
    return PatchBatch.from_arrays(x, np.array([[2, 1]]), ids=np.array([pid], np.uint64),
                                  names=[name or f"mu-24-sim_{pid:012d}"], given_class=[cls],
                                  bin_value=[dist])


def make_emitter(state: Path, **cfg) -> JobEmitter:
    jobs_cfg = JobsConfig(backend="handoff", poll_interval_s=0.05, **cfg)
    em = JobEmitter(make_backend(jobs_cfg, state), jobs_cfg, state)
    em.recover()
    return em


def test_a_pick_becomes_an_outbox_record_with_everything_the_manager_needs(tmp_path):
    em = make_emitter(tmp_path)
    name = em.emit(make_patch(42, "mu-24-abc_000000000042", cls=2, dist=7.5), 1.25, "model-v3")
    (rec,) = HandoffConsumer(tmp_path / "handoff").list()
    assert rec.name == name and rec.patch_id == 42
    assert rec.producer_name == "mu-24-abc_000000000042" and rec.cls == 2
    assert rec.patch_type == "ras2raf1" and rec.bin_value == 7.5
    assert rec.novelty == 1.25 and rec.model_version == "model-v3" and rec.attempt == 1
    assert rec.patch_file == str(tmp_path / "jobs" / "42" / "patch.h5")
    assert read_patches(rec.patch_file).names.tolist() == ["mu-24-abc_000000000042"]
    assert abs(rec.t - time.time()) < 60 and rec.time.endswith("Z")
    raw = json.loads((tmp_path / "handoff" / "outbox" / f"{name}.json").read_text())
    assert raw["schema"] == "mummi-ml-handoff" and raw["class"] == 2


def test_a_record_says_how_many_tasks_its_command_runs_as(tmp_path):
    b = make_backend(JobsConfig(backend="handoff"), tmp_path)
    (tmp_path / "job").mkdir()
    b.submit("train-2", [PY, "-c", "pass"], tmp_path / "job", tasks=2)  # one MPI program
    b.submit("md-1", [PY, "-c", "pass"], tmp_path / "job")  # an MD pick: the default, 1
    consumer = HandoffConsumer(tmp_path / "handoff")
    assert consumer.record("train-2").tasks == 2 and consumer.record("md-1").tasks == 1
    old = json.loads((tmp_path / "handoff" / "outbox" / "md-1.json").read_text())
    del old["tasks"]  # a record written before the field existed reads as one process
    assert HandoffRecord.from_json(old).tasks == 1


def test_slots_are_the_picks_handed_over_and_not_yet_answered(tmp_path):
    em = make_emitter(tmp_path, slots=2)
    em.emit(make_patch(1), 0.0, "v")
    em.emit(make_patch(2), 0.0, "v")
    assert em.free_slots() == 0
    consumer = HandoffConsumer(tmp_path)  # the state directory works too
    consumer.take(em.records[1].name)
    em.poll()
    assert em.records[1].state == "running" and em.free_slots() == 0
    consumer.ack(em.records[1].name)
    (done,) = em.poll()
    assert done["patch_id"] == 1 and done["state"] == "completed"
    assert em.free_slots() == 1
    assert [r.patch_id for r in consumer.list()] == [2]


def test_a_failed_answer_is_retried_as_a_new_record_then_recorded_failed(tmp_path):
    em = make_emitter(tmp_path, max_retries=1)
    em.emit(make_patch(5), 0.0, "v")
    consumer = HandoffConsumer(tmp_path / "handoff")
    consumer.fail(em.records[5].name, "createsim crashed", exit_code=3)
    em.poll()
    (retry,) = consumer.list()
    assert retry.patch_id == 5 and retry.attempt == 2
    consumer.fail(retry.name, "createsim crashed again")
    (done,) = em.poll()
    assert done["state"] == "failed" and done["attempts"] == 2
    assert done["reason"] == "createsim crashed again"


def test_an_answer_is_given_once(tmp_path):
    em = make_emitter(tmp_path)
    name = em.emit(make_patch(3), 0.0, "v")
    consumer = HandoffConsumer(tmp_path / "handoff")
    consumer.ack(name)
    with pytest.raises(HandoffError, match="already answered"):
        consumer.fail(name, "late")
    with pytest.raises(HandoffError, match="cannot take"):
        consumer.take(name)
    assert em.backend.state(name).state == JobState.COMPLETED


def test_cancelling_an_untaken_pick_answers_it_and_the_consumer_cannot_take_it(tmp_path):
    em = make_emitter(tmp_path)
    name = em.emit(make_patch(4), 0.0, "v")
    em.backend.cancel(name)
    consumer = HandoffConsumer(tmp_path / "handoff")
    assert consumer.list() == []
    with pytest.raises(HandoffError, match="answered cancelled"):
        consumer.take(name)
    with pytest.raises(HandoffError, match="cancelled by the selector"):
        consumer.ack(name)
    assert em.backend.state(name).state == JobState.CANCELLED


def test_cancelling_a_taken_pick_asks_the_consumer_to_stop(tmp_path):
    em = make_emitter(tmp_path)
    name = em.emit(make_patch(6), 0.0, "v")
    consumer = HandoffConsumer(tmp_path / "handoff")
    consumer.take(name)
    em.backend.cancel(name)
    assert consumer.cancel_requested(name)
    assert em.backend.state(name).state == JobState.RUNNING
    consumer.confirm_cancel(name)
    assert em.backend.state(name).state == JobState.CANCELLED


def test_a_record_is_found_by_producer_name_or_patch_id(tmp_path):
    em = make_emitter(tmp_path, slots=3)
    a = em.emit(make_patch(7, "mu-0-x_7"), 0.0, "v")
    consumer = HandoffConsumer(tmp_path / "handoff")
    assert consumer.resolve("mu-0-x_7") == a and consumer.resolve("7") == a
    with pytest.raises(HandoffError, match="no record"):
        consumer.resolve("mu-0-x_8")


def test_a_directory_without_an_outbox_is_refused(tmp_path):
    with pytest.raises(HandoffError, match="not a handoff directory"):
        HandoffConsumer(tmp_path)


# ---- the command line ------------------------------------------------------------------------

def test_handoff_list_ack_fail_on_the_command_line(tmp_path, capsys):
    em = make_emitter(tmp_path, slots=3, max_retries=0)
    a = em.emit(make_patch(11, "mu-a"), 0.5, "v")
    b = em.emit(make_patch(12, "mu-b"), 0.25, "v")
    assert main(["handoff", "list", str(tmp_path), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["name"] for d in lines] == [a, b] and lines[0]["producer_name"] == "mu-a"
    assert main(["handoff", "ack", str(tmp_path), "mu-a"]) == 0
    assert main(["handoff", "fail", str(tmp_path), b, "--reason", "no nodes"]) == 0
    capsys.readouterr()
    assert main(["handoff", "list", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == ""
    em.poll()
    assert em.records[11].state == "completed" and em.records[12].state == "failed"
    assert em.records[12].reason == "no nodes"


def test_handoff_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    make_emitter(tmp_path)
    assert main(["handoff", "ack", str(tmp_path), "nothing-like-this"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mummi-ml handoff: error:") and "\n" not in err
    assert main(["handoff", "list", str(tmp_path / "nowhere")]) == 2


# ---- exactly-once across kill -9 of either side ------------------------------------------------

SELECTOR = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from mummi_ml.backends import JobEmitter, JobsConfig, make_backend
    from mummi_ml.patch import PatchBatch

    state, n = Path(sys.argv[1]), int(sys.argv[2])
    cfg = JobsConfig(backend="handoff", slots=4, poll_interval_s=0.02, max_retries=0)
    em = JobEmitter(make_backend(cfg, state), cfg, state)
    em.recover()
    rng = np.random.default_rng(0)
    for pid in range(n):  # picks in order while slots are free
        while em.free_slots() <= 0:
            em.poll()
            time.sleep(0.02)
        if not em.emitted(pid):
            x = rng.random((1, 37, 37, 14), dtype=np.float32)
            em.emit(PatchBatch.from_arrays(x, np.array([[1, 0]]), ids=np.array([pid]),
                                           names=[f"sim-{pid}"]), 1.0, "v")
    em.wait(120)
    print("DONE", em.counts())
    """
)

CONSUMER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from mummi_ml.backends import HandoffConsumer, HandoffError

    c = HandoffConsumer(sys.argv[1])
    while True:  # a workflow manager: launch each pick once (idempotently), then acknowledge
        for rec in c.list():
            if not c.is_taken(rec.name):
                try:
                    c.take(rec.name)
                except HandoffError:
                    continue
            try:  # the launch: one marker per pick, made once even if we die after it
                fd = os.open(Path(rec.job_dir) / "launched", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, rec.producer_name.encode())
                os.close(fd)
            except FileExistsError:
                pass
            time.sleep(0.01)
            c.ack(rec.name)
        time.sleep(0.02)
    """
)


def test_kill_9_of_either_side_hands_each_pick_over_and_answers_it_exactly_once(tmp_path):
    n = 40
    rng = np.random.default_rng(3)
    sel = subprocess.Popen([PY, "-c", SELECTOR, str(tmp_path), str(n)], cwd=REPO)
    time.sleep(2.0)  # the handoff directory exists once the selector has started
    cons = subprocess.Popen([PY, "-c", CONSUMER, str(tmp_path)], cwd=REPO)
    for _ in range(8):  # kill -9 one side or the other at random moments, restart it
        time.sleep(float(rng.uniform(0.2, 1.0)))
        if rng.random() < 0.5:
            sel.kill()
            sel.wait(30)
            sel = subprocess.Popen([PY, "-c", SELECTOR, str(tmp_path), str(n)], cwd=REPO)
        else:
            cons.kill()
            cons.wait(30)
            cons = subprocess.Popen([PY, "-c", CONSUMER, str(tmp_path)], cwd=REPO)
    try:
        sel.wait(150)
    finally:
        cons.kill()
        cons.wait(30)
    assert sel.returncode == 0
    outbox = [json.loads(p.read_text()) for p in (tmp_path / "handoff" / "outbox").glob("*.json")]
    assert sorted(r["patch_id"] for r in outbox) == list(range(n))  # one record per pick
    assert {r["attempt"] for r in outbox} == {1}
    acks = [json.loads(p.read_text()) for p in (tmp_path / "handoff" / "ack").glob("*.json")]
    assert len(acks) == n and {a["status"] for a in acks} == {"done"}
    for pid in range(n):
        assert (tmp_path / "jobs" / str(pid) / "launched").read_text() == f"sim-{pid}"
    em = make_emitter(tmp_path, slots=4)
    assert em.counts()["completed"] == n
