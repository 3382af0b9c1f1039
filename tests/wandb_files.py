"""Read what an offline wandb run wrote (its run-<id>.wandb file), for tests: the run's group and name, its config
and the keys it logged. The file is wandb's documented transaction log — a 7-byte header, then records in 32 KiB
blocks, each chunk with a 7-byte header (CRC, little-endian length, type: 1 full, 2 first, 3 middle, 4 last) —
whose records are the `Record` messages of the public `wandb.proto.wandb_internal_pb2`."""
import json
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7


def records(path):
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, pending = Path(path).read_bytes(), HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        pending += data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def offline_run(path):
    """{"group", "name", "config": {key: value}, "logged": {keys}, "summary": {key: value}} of one offline run file."""
    out = {"group": None, "name": None, "config": {}, "logged": set(), "summary": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["group"], out["name"] = record.run.run_group, record.run.display_name
            out["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            out["summary"].update({i.key: json.loads(i.value_json) for i in record.summary.update})
        elif kind == "history":
            out["logged"] |= {i.key or i.nested_key[0] for i in record.history.item}  # media: nested under the key
    return out


def offline_runs(folder):
    """Every offline run file under `folder`, read once wandb has shut down: wandb-core writes the files on its own
    schedule, and a file read right after `finish()` was once found holding no record yet (1 CI run in 9)."""
    import wandb

    wandb.teardown()  # waits for wandb-core to close, and so write out, every run file of this process
    return [offline_run(p) for p in sorted(Path(folder).rglob("offline-run-*/run-*.wandb"))]
