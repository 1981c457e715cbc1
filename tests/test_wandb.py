"""W&B logging with the real wandb library, offline (no network, no mock): runs are read
back from their ``run-*.wandb`` transaction logs with wandb's own protobuf ``Record``."""

from __future__ import annotations

import csv
import json
import struct
import types
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from wandb.proto import wandb_internal_pb2

from lica import dashboard
from lica.loggers import CSVLogger, WandbLogger, build_loggers, wandb_group, wandb_mode
from lica.train import train
from tests.conftest import TINY, compose_config
from tests.test_plot import multirun  # noqa: F401  (the shared 4-job multirun fixture)


@pytest.fixture(autouse=True)
def wandb_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        monkeypatch.setenv(var, str(tmp_path / f"wandb-{sub}"))


# -- reading a .wandb file ---------------------------------------------------------------
def wandb_records(path: Path) -> list[wandb_internal_pb2.Record]:
    """The records of a W&B transaction log: a 7-byte header (':W&B', magic 0xBEE1,
    version) then LevelDB-log framing (32 KiB blocks; chunks of checksum, length, type)."""
    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1)
    records, pending, i = [], b"", 7
    while i + 7 <= len(data):
        left = 32768 - i % 32768
        if left < 7:
            i += left
            continue
        _, length, kind = struct.unpack("<IHB", data[i:i + 7])
        chunk, i = data[i + 7:i + 7 + length], i + 7 + length
        if kind == 0:  # zero padding to the end of the block
            i += left - 7 - length
            continue
        pending = chunk if kind in (1, 2) else pending + chunk  # FULL/FIRST start, MIDDLE/LAST extend
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def read_run(run_dir: Path) -> list[dict]:
    """Every W&B run segment written under ``run_dir``: id, group, tags, config, history."""
    runs = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        info: dict = {"config": {}, "history": [], "exit_code": None}
        for r in wandb_records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                info.update(id=r.run.run_id, group=r.run.run_group, tags=list(r.run.tags), project=r.run.project)
                info["config"].update({c.key: json.loads(c.value_json) for c in r.run.config.update})
            elif kind == "config":
                info["config"].update({c.key: json.loads(c.value_json) for c in r.config.update})
            elif kind == "history":
                items = r.history.item
                info["history"].append({h.key or "/".join(h.nested_key): json.loads(h.value_json) for h in items})
            elif kind == "exit":
                info["exit_code"] = r.exit.exit_code
        runs.append(info)
    return runs


# -- a real offline run ------------------------------------------------------------------
@pytest.mark.slow
def test_offline_run_carries_group_tags_config_and_test_metrics(tmp_path):
    cfg = compose_config(TINY + ["logger=[csv,wandb]", "rollout.num_workers=0", "seed=1"])
    train(cfg, run_dir=tmp_path)
    (run,) = read_run(tmp_path)
    assert run["group"] == wandb_group(OmegaConf.to_object(cfg))
    assert run["group"].startswith("lica_spread-mix-xi0.1-") and run["project"] == "lica"
    assert {"algo:lica", "critic:mix", "entropy:adaptive", "entropy_coef:0.1", "actor_input:probs",
            "env:mpe:spread", "seed:1"} <= set(run["tags"])
    config = run["config"]
    assert {k: config[k] for k in ("critic", "entropy", "entropy_coef", "actor_input", "env_id", "seed")} == {
        "critic": "mix", "entropy": "adaptive", "entropy_coef": 0.1, "actor_input": "probs",
        "env_id": "mpe:spread", "seed": 1}
    assert (config["critic_label"], config["entropy_label"]) == ("C_Mix", "ξ=0.1")
    assert config["algo"]["critic"] == "mix" and config["tags"]["critic"] == "mix"  # train.py's log_hyperparams
    tests = [h for h in run["history"] if "test_return_mean" in h]
    rows = [r for r in csv.DictReader((tmp_path / "csv" / "metrics.csv").open()) if r["test_return_mean"]]
    assert [h["env_steps"] for h in tests] == [0, 800, 1600]
    assert [h["test_return_mean"] for h in tests] == pytest.approx([float(r["test_return_mean"]) for r in rows])
    assert any("policy_entropy" in h for h in run["history"])
    assert run["exit_code"] == 0  # finished at the end of fit
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["lica"]["logger_run_ids"]["WandbLogger"] == run["id"]

    # resuming (with a larger budget) continues the same W&B run id, and the CSV keeps the rows written before
    train(compose_config(TINY + ["logger=[csv,wandb]", "rollout.num_workers=0", "seed=1", "resume=true",
                                 "trainer.max_env_steps=2000"]), run_dir=tmp_path)
    first, second = read_run(tmp_path)
    assert first["id"] == second["id"] == run["id"] and second["group"] == run["group"]
    assert len([r for r in csv.DictReader((tmp_path / "csv" / "metrics.csv").open()) if r["test_return_mean"]]) == 4


@pytest.mark.slow
def test_multirun_makes_one_run_per_job_grouped_by_variant(multirun):
    folder, _ = multirun
    runs = {}
    for job in sorted(p for p in folder.iterdir() if p.name.isdigit()):
        (run,) = read_run(job)  # exactly one W&B run per job, under the job's folder
        runs[(run["config"]["critic"], run["config"]["seed"])] = run
    assert len({r["id"] for r in runs.values()}) == 4
    assert all(r["exit_code"] == 0 for r in runs.values())
    assert runs[("mix", 1)]["group"] == runs[("mix", 2)]["group"]  # seeds fold into one group
    assert runs[("mlp", 1)]["group"] == runs[("mlp", 2)]["group"]
    assert runs[("mix", 1)]["group"] != runs[("mlp", 1)]["group"]  # variants do not


def test_group_ignores_seed_and_execution_settings_only():
    def group(*overrides):
        return wandb_group(OmegaConf.to_object(compose_config(["logger=wandb", *overrides])))

    base = group("seed=1")
    assert group("seed=2") == group("seed=2", "rollout.num_workers=0", "trainer.enable_progress_bar=false") == base
    assert base.startswith("lica_spread-mix-xi0.1-")
    assert len({base, group("algo.critic=mlp"), group("algo.entropy=vanilla"), group("algo.entropy_coef=0.2"),
                group("algo.actor_input=gumbel"), group("env=spread5")}) == 6
    assert group("algo.entropy=vanilla").startswith("lica_spread-mix-beta0.15-")
    assert group("logger.wandb.group=mine") == "mine"


def test_mode_is_offline_without_an_api_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode(None) == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert wandb_mode(None) == "online"  # what `wandb login` writes
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(None) == "offline"
    assert wandb_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="logger.wandb.mode"):
        wandb_mode("onlin")


def test_resume_takes_the_run_id_from_the_checkpoint_and_keeps_csv_rows(tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    torch.save({"lica": {"logger_run_ids": {"CSVLogger": "", "WandbLogger": "abc123xy"}},
                "RolloutDataModule": {"env_steps": 800}}, ckpt)
    (tmp_path / "csv").mkdir()
    with (tmp_path / "csv" / "metrics.csv").open("w") as f:  # rows past the checkpoint get dropped
        f.write("env_steps,step,test_return_mean\n0.0,0,1.0\n400.0,10,2.0\n800.0,20,3.0\n1200.0,30,4.0\n")
    cfg = OmegaConf.to_object(compose_config(["logger=[csv,wandb]", "resume=true"]))
    csv_logger, wandb_logger = build_loggers(cfg, tmp_path, ckpt_path=ckpt)
    assert isinstance(csv_logger, CSVLogger) and isinstance(wandb_logger, WandbLogger)
    assert wandb_logger.version == "abc123xy"  # no W&B run started yet: the id it will continue
    assert wandb_logger.save_dir == str(tmp_path)
    csv_logger.log_metrics({"env_steps": 840.0, "critic_loss": 0.5}, step=21)
    csv_logger.save()
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert [r["env_steps"] for r in rows] == ["0.0", "400.0", "800.0", "840.0"]
    assert rows[-1]["critic_loss"] == "0.5" and rows[0]["test_return_mean"] == "1.0"
    fresh = OmegaConf.to_object(compose_config(["logger=[csv,wandb]"]))  # not resuming: a new run id
    assert build_loggers(fresh, tmp_path, ckpt_path=None)[1].version is None


# -- the dashboard -----------------------------------------------------------------------
def test_dashboard_spec_groups_by_critic_and_entropy(capsys):
    spec = dashboard.dashboard_spec("my-team", "lica-ablations")
    assert spec["report"]["entity"] == "my-team" and spec["report"]["project"] == "lica-ablations"
    grids = {b["comparison"]: b for b in spec["blocks"] if b["type"] == "PanelGrid"}
    assert grids["critic"]["runsets"][0]["groupby"] == ["config.env_id", "config.critic_label"]  # C_Mix | C_MLP
    assert grids["entropy"]["runsets"][0]["groupby"] == ["config.env_id", "config.entropy_label"]  # ξ=.. | β=..
    headings = [b["text"] for b in spec["blocks"] if b["type"] == "H2"]
    assert any("C_Mix vs C_MLP" in h for h in headings) and any("β vs ξ" in h for h in headings)
    for grid in grids.values():
        assert all(rs["project"] == "lica-ablations" and rs["entity"] == "my-team" for rs in grid["runsets"])
        assert [(p["x"], p["y"]) for p in grid["panels"]] == [
            ("env_steps", ["test_battle_won_mean"]), ("env_steps", ["test_return_mean"]),
            ("env_steps", ["policy_entropy"])]
    assert dashboard.main(["--entity", "my-team", "--project", "lica-ablations", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(spec))


def test_dashboard_builds_reports_api_objects_and_needs_a_key_to_publish(monkeypatch, tmp_path):
    made: list[tuple[str, dict]] = []

    def recorder(name):
        def make(**kwargs):
            made.append((name, kwargs))
            return types.SimpleNamespace(kind=name, **kwargs)
        return make

    names = ("Report", "H1", "H2", "P", "PanelGrid", "Runset", "LinePlot")
    wr = types.SimpleNamespace(**{n: recorder(n) for n in names})
    report = dashboard.build_report(dashboard.dashboard_spec("e", "p"), wr=wr)
    assert report.kind == "Report" and report.project == "p"
    grids = [b for b in report.blocks if b.kind == "PanelGrid"]
    assert [g.runsets[0].groupby[1] for g in grids] == ["config.critic_label", "config.entropy_label"]
    assert [p.y for p in grids[0].panels] == [["test_battle_won_mean"], ["test_return_mean"], ["policy_entropy"]]
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(dashboard.DashboardError, match="API key"):
        dashboard.publish(dashboard.dashboard_spec("e", "p"))
