"""A stand-in W&B sweep server for tests, loaded into subprocesses through PYTHONPATH when FAKE_WANDB_SWEEPS names a
folder: `wandb.sweep` stores the config there and `wandb.agent` hands out its grid the way wandb's agent does — the
run id in WANDB_RUN_ID, the parameters in the YAML file WANDB_SWEEP_PARAM_PATH names, the sweep in WANDB_SWEEP_ID —
then calls the real function, whose real `wandb.init` (offline) reads them. Nothing else of wandb is replaced."""
import os

if os.environ.get("FAKE_WANDB_SWEEPS"):
    import itertools
    import json
    import uuid
    from pathlib import Path

    import wandb
    import yaml

    STATE = Path(os.environ["FAKE_WANDB_SWEEPS"])

    def sweep(sweep, project=None, entity=None):
        sweep_id = uuid.uuid4().hex[:8]
        STATE.mkdir(parents=True, exist_ok=True)
        (STATE / f"{sweep_id}.json").write_text(json.dumps({"config": sweep, "given": 0}))
        return sweep_id

    def grid(config):
        names = sorted(config["parameters"])
        choices = [spec["values"] if "values" in spec else [spec["value"]] for spec in
                   (config["parameters"][n] for n in names)]
        return [dict(zip(names, point)) for point in itertools.product(*choices)]

    def agent(sweep_id, function=None, count=None, project=None, entity=None):
        path = STATE / f"{sweep_id.split('/')[-1]}.json"
        state = json.loads(path.read_text())
        points = grid(state["config"])
        for _ in range(count or len(points)):
            if state["given"] >= len(points):
                return
            params = points[state["given"]]
            state["given"] += 1
            path.write_text(json.dumps(state))
            run_id = uuid.uuid4().hex[:8]
            param_path = STATE / f"config-{run_id}.yaml"
            param_path.write_text(yaml.safe_dump({"wandb_version": 1, **{k: {"value": v} for k, v in params.items()}}))
            os.environ.update(WANDB_RUN_ID=run_id, WANDB_SWEEP_PARAM_PATH=str(param_path), WANDB_SWEEP_ID=sweep_id)
            try:
                wandb.teardown()  # as wandb's agent does before each run: the next wandb.init reads the variables anew
                function()
                wandb.finish()
            finally:
                for key in ("WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_SWEEP_ID"):
                    os.environ.pop(key, None)

    wandb.sweep, wandb.agent = sweep, agent
