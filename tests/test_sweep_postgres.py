"""A local sweep past one machine (--storage postgresql://…): agents in separate processes, each with its own sweep
folder and runs folder as on separate machines, share one study on a real PostgreSQL server — started for these
tests in a throwaway cluster by Debian's pg_virtualenv (apt-get install postgresql, as the README says)."""
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from common.errors import UserError
from partA.sweep_engine import LocalSweep, claim_next_run
from test_sweep import GRID, _agent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql://… of a throwaway cluster that lives as long as this module's tests (-t: in a temporary folder
    even as root, never a system cluster that a killed run could leave behind)."""
    if not shutil.which("pg_virtualenv"):
        pytest.skip("needs Debian's postgresql for pg_virtualenv (apt-get install postgresql, as the README says)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("needs psycopg: make setup installs it")
    cluster = subprocess.Popen(["pg_virtualenv", "-t", "sh", "-c", 'echo "PGENV $PGUSER $PGPASSWORD $PGHOST $PGPORT '
                                '$PGDATABASE"; read _'], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    said = []
    for line in cluster.stdout:  # pg_virtualenv reports its own steps first
        if line.startswith("PGENV "):
            break
        said.append(line.strip())
    fields = line.split()[1:]
    if len(fields) != 5:
        cluster.stdin.close()
        cluster.wait(timeout=120)
        pytest.fail(f"pg_virtualenv did not start a cluster (it said {said[-3:]})")
    user, password, host, port, database = fields
    if host.startswith("/"):  # a socket folder
        yield f"postgresql://{user}:{password}@/{database}?host={host}&port={port}"
    else:
        yield f"postgresql://{user}:{password}@{host}:{port}/{database}"
    cluster.stdin.close()  # `read` returns: pg_virtualenv stops the cluster and removes it
    cluster.wait(timeout=120)


def machine(tmp_path, name, url, config=GRID, sweep="shared"):
    """One machine's view of the sweep: its own runs folder and sweep folder, the study in the database."""
    return LocalSweep.create_or_open(tmp_path / name / "runs" / "sweeps" / sweep, config, {"data_dir": "unused"},
                                     log=lambda *_: None, storage=url)


def test_two_agents_on_two_machines_share_one_sweep_and_never_run_a_config_twice(tmp_path, postgres_url):
    sweeps = [machine(tmp_path, m, postgres_url, sweep="two-agents") for m in ("one", "two")]
    context = multiprocessing.get_context("spawn")  # fresh processes: no database connection shared by fork
    agents = [context.Process(target=_agent, args=(s.folder, str(s.folder.parent.parent), 6)) for s in sweeps]
    for agent in agents:
        agent.start()
    for agent in agents:
        agent.join(120)
    assert [a.exitcode for a in agents] == [0, 0]
    runs = sweeps[0].runs()
    assert sweeps[1].runs() == runs  # both machines read one study
    configs = [tuple(sorted(r["params"].items())) for r in runs]
    assert len(configs) == 6 and len(set(configs)) == 6 and all(r["state"] == "finished" for r in runs)
    assert len({r["agent"]["pid"] for r in runs}) == 2  # both agents did work
    assert not (sweeps[0].folder / "journal.log").exists()  # the study is in the database, not in a folder


def _claim_and_hang(folder, claimed):
    run = claim_next_run(LocalSweep(folder), 3)
    run["trial"].report(0.5, 1)  # one epoch done ...
    claimed.put(run["id"])
    time.sleep(600)  # ... then it is killed


def test_a_killed_agents_run_is_resumed_by_the_other_agent(tmp_path, postgres_url):
    first, second = (machine(tmp_path, m, postgres_url, sweep="killed") for m in ("one", "two"))
    context = multiprocessing.get_context("spawn")
    claimed = context.Queue()
    doomed = context.Process(target=_claim_and_hang, args=(first.folder, claimed))
    doomed.start()
    orphan = claimed.get(timeout=120)
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join()
    survivor = context.Process(target=_agent, args=(second.folder, str(second.folder.parent.parent), 3))
    survivor.start()
    survivor.join(120)
    assert survivor.exitcode == 0
    runs = second.runs()
    assert len(runs) == 3 and all(r["state"] == "finished" for r in runs)
    resumed = next(r for r in runs if r["id"] == orphan)
    assert resumed["resumed"] and resumed["history"][0] == {"epoch": 1, "val_acc": 0.5}
    assert resumed["agent"]["pid"] == survivor.pid


def test_another_config_under_the_same_name_is_refused_on_any_machine(tmp_path, postgres_url):
    machine(tmp_path, "one", postgres_url, sweep="one-config").study()
    other = {**GRID, "parameters": {"dropout": {"values": [0.3, 0.4]}}}
    with pytest.raises(UserError, match="runs another config"):
        machine(tmp_path, "two", postgres_url, config=other, sweep="one-config").runs()


def test_a_server_that_does_not_answer_is_one_line_without_the_password(tmp_path):
    pytest.importorskip("psycopg")
    with pytest.raises(UserError) as err:
        machine(tmp_path, "one", "postgresql://me:secret@127.0.0.1:9/none")  # port 9: nothing listens
    assert str(err.value).startswith("cannot use the sweep storage postgresql+psycopg://me:***@127.0.0.1:9/none (")
    assert "secret" not in str(err.value) and "check that the server runs" in str(err.value)


def test_without_psycopg_the_storage_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # an import of it fails, as where it is not installed
    with pytest.raises(UserError, match=r"needs psycopg: pip install -e '\.\[postgres\]'"):
        machine(tmp_path, "one", "postgresql://me@127.0.0.1:9/none")


def test_storage_must_be_a_postgresql_url(tmp_path):
    with pytest.raises(UserError, match="--storage takes a PostgreSQL URL"):
        machine(tmp_path, "one", "mysql://me@db/x")
