"""W&B logging with the real wandb library, offline (no network, no mock): runs are read
back from their ``run-*.wandb`` transaction logs with wandb's own protobuf ``Record``."""

from __future__ import annotations

import csv
import json
import struct
import types
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
from omegaconf import OmegaConf
from wandb.proto import wandb_internal_pb2

from lica import dashboard
from lica.loggers import CSVLogger, WandbLogger, build_loggers, wandb_group, wandb_key, wandb_mode
from lica.runs import load_runs
from lica.sweep import read_jobs
from lica.variants import variant_id
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
def test_offline_run_carries_group_tags_config_and_test_metrics(tmp_path, capsys):
    cfg = compose_config(TINY + ["logger=[csv,wandb]", "rollout.num_workers=0", "seed=1"])
    train(cfg, run_dir=tmp_path)
    (run,) = read_run(tmp_path)
    vid = variant_id(cfg)
    assert run["group"] == wandb_group(OmegaConf.to_object(cfg)) == f"LICA, C_Mix, ξ=0.1, mpe:spread(n=3) [{vid}]"
    assert run["project"] == "lica"
    assert {"algo:lica", "critic:mix", "entropy:adaptive", "entropy_coef:0.1", "actor_input:probs",
            "env:mpe:spread(n=3)", "seed:1", f"variant:{vid}"} <= set(run["tags"])
    config = run["config"]
    assert {k: config[k] for k in ("critic", "entropy", "entropy_coef", "actor_input", "env_id", "seed")} == {
        "critic": "mix", "entropy": "adaptive", "entropy_coef": 0.1, "actor_input": "probs",
        "env_id": "mpe:spread(n=3)", "seed": 1}
    assert (config["critic_label"], config["entropy_label"]) == ("C_Mix", "ξ=0.1")
    assert (config["variant"], config["variant_id"]) == (run["group"], vid)
    assert config["algo"]["critic"] == "mix" and config["tags"]["critic"] == "mix"  # train.py's log_hyperparams
    tests = [h for h in run["history"] if "test/return_mean" in h]
    rows = [r for r in csv.DictReader((tmp_path / "csv" / "metrics.csv").open()) if r["test_return_mean"]]
    assert [h["env_steps"] for h in tests] == [0, 800, 1600]
    assert [h["test/return_mean"] for h in tests] == pytest.approx([float(r["test_return_mean"]) for r in rows])
    assert any("train/policy_entropy" in h and "train/return_mean" in h for h in run["history"])
    assert not any(k.startswith("test_") or k == "policy_entropy" for h in run["history"] for k in h)
    assert run["exit_code"] == 0  # finished at the end of fit
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["lica"]["logger_run_ids"]["WandbLogger"] == run["id"]
    # the exact command that uploads it
    (offline_dir,) = tmp_path.glob("wandb/offline-run-*")
    assert f"upload it with: wandb sync {offline_dir}\n" in capsys.readouterr().out

    # resuming (with a larger budget) continues the same W&B run id, and the CSV keeps the rows written before
    train(compose_config(TINY + ["logger=[csv,wandb]", "rollout.num_workers=0", "seed=1", "resume=true",
                                 "trainer.max_env_steps=2000"]), run_dir=tmp_path)
    first, second = read_run(tmp_path)
    assert first["id"] == second["id"] == run["id"] and second["group"] == run["group"]
    assert len([r for r in csv.DictReader((tmp_path / "csv" / "metrics.csv").open()) if r["test_return_mean"]]) == 4


@pytest.mark.slow
def test_multirun_groups_are_the_variants_of_the_table(multirun):
    folder, stdout = multirun
    records = {r.num: r for r in read_jobs(folder)}
    runs, paths = {}, []
    for job in sorted(p for p in folder.iterdir() if p.name.isdigit()):
        (run,) = read_run(job)  # exactly one W&B run per job, under the job's folder
        runs[(run["config"]["critic"], run["config"]["seed"])] = run
        record = records[int(job.name)]
        assert run["group"] == f"{record.variant} [{record.variant_id}]" == run["config"]["variant"]
        assert run["config"]["variant_label"] == record.variant
        paths += [str(p) for p in job.glob("wandb/offline-run-*")]
    assert len({r["id"] for r in runs.values()}) == 4
    assert all(r["exit_code"] == 0 for r in runs.values())
    assert runs[("mix", 1)]["group"] == runs[("mix", 2)]["group"]  # seeds fold into one group
    assert runs[("mlp", 1)]["group"] == runs[("mlp", 2)]["group"]
    assert runs[("mix", 1)]["group"].startswith("C_Mix [") and runs[("mlp", 1)]["group"].startswith("C_MLP [")
    table_labels = [line.split()[0] for line in stdout[stdout.index("== lica multirun"):].splitlines()
                    if line.startswith("C_M")]
    assert table_labels == ["C_Mix", "C_MLP"]  # the same groups as the table
    assert f"wandb sync {' '.join(sorted(paths))}" in stdout  # the sweep's report: every offline run


def test_group_ignores_seed_and_execution_settings_only():
    def group(*overrides):
        return wandb_group(OmegaConf.to_object(compose_config(["logger=wandb", *overrides])))

    base = group("seed=1")
    assert group("seed=2") == group("seed=2", "rollout.num_workers=0", "trainer.enable_progress_bar=false") == base
    assert base.startswith("LICA, C_Mix, ξ=0.1, mpe:spread(n=3) [")
    assert len({base, group("algo.critic=mlp"), group("algo.entropy=vanilla"), group("algo.entropy_coef=0.2"),
                group("algo.actor_input=gumbel"), group("env=spread5"), group("algo.actor_lr=0.01")}) == 7
    assert group("algo.entropy=vanilla").startswith("LICA, C_Mix, β=0.15, mpe:spread(n=3) [")
    assert group("algo=coma").startswith("COMA, β=0, mpe:spread(n=3) [")
    assert group("logger.wandb.group=mine") == "mine"


def test_api_key_is_found_where_wandb_looks_for_it(monkeypatch, tmp_path):
    from wandb.sdk import wandb_setup

    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert wandb_mode(None) == "offline"
    # `wandb login` stores the key under the host of wandb's own server URL, whatever it is
    host = urlsplit(wandb_setup.singleton().settings.base_url).netloc
    (tmp_path / "netrc").write_text(f"machine {host}\n  login user\n  password {'a' * 40}\n")
    assert wandb_mode(None) == "online"
    (tmp_path / "netrc").write_text(f"machine elsewhere.example\n  login user\n  password {'a' * 40}\n")
    assert wandb_mode(None) == "offline"
    monkeypatch.setenv("WANDB_BASE_URL", "https://elsewhere.example")  # a self-hosted server
    assert wandb_mode(None) == "online"
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode(None) == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(None) == "offline"
    assert wandb_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="logger.wandb.mode"):
        wandb_mode("onlin")


def test_metric_names_get_train_and_test_prefixes():
    assert [wandb_key(k) for k in ("test_return_mean", "test_battle_won_mean", "train_return_mean",
                                   "policy_entropy", "critic_loss", "env_steps")] == [
        "test/return_mean", "test/battle_won_mean", "train/return_mean", "train/policy_entropy",
        "train/critic_loss", "env_steps"]


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
def fake_runs(tmp_path: Path) -> list:
    """Finished runs of two envs: spread (3 C_Mix seeds, 1 C_MLP seed) and SMAX 2s3z (wins)."""
    from tests.test_plot import make_run

    rows = [{"env_steps": s, "test_return_mean": 1.0, "policy_entropy": 1.0} for s in (0, 100)]
    for i in range(3):
        make_run(tmp_path / "mpe" / str(i), i, "mix", rows)
    make_run(tmp_path / "mpe" / "3", 0, "mlp", rows)
    smax = tmp_path / "smax" / "0"
    make_run(smax, 0, "mix", [{**r, "test_battle_won_mean": 0.5} for r in rows])
    OmegaConf.save(compose_config(["env=smax_2s3z"]), smax / ".hydra" / "config.yaml")
    return load_runs(tmp_path / "mpe") + load_runs(tmp_path / "smax")


def test_dashboard_spec_uses_the_variants_and_the_quartile_band(tmp_path, capsys):
    runs = fake_runs(tmp_path)
    spec = dashboard.dashboard_spec("my-team", "lica-ablations", runs)
    assert spec["report"]["entity"] == "my-team" and spec["report"]["project"] == "lica-ablations"
    grids = {b["env"]: b for b in spec["blocks"] if b["type"] == "PanelGrid"}
    assert list(grids) == ["mpe:spread(n=3)", "jax:2s3z"]
    spread = grids["mpe:spread(n=3)"]
    (runset,) = spread["runsets"]
    assert runset["groupby"] == ["config.variant"]  # the W&B group: "<label> [<variant id>]"
    ids = sorted({r.variant.id for r in runs if r.variant.env == "mpe:spread(n=3)"})
    assert runset["filters"] == f"Config('env_id') == 'mpe:spread(n=3)' and Config('variant_id') in {ids}"
    paragraphs = [b["text"] for b in spec["blocks"] if b["type"] == "P"]
    assert "Variants: C_Mix (3 seeds); C_MLP (1 seeds)" in paragraphs  # the labels of the table and figures
    # no win-rate panel where the env reports no wins; W&B metric names
    assert [p["chart_fields"]["y"] for p in spread["panels"]] == ["test/return_mean", "train/policy_entropy"]
    assert [p["chart_fields"]["y"] for p in grids["jax:2s3z"]["panels"]] == [
        "test/return_mean", "test/battle_won_mean", "train/policy_entropy"]
    panel = spread["panels"][0]
    assert panel["type"] == "CustomChart" and panel["chart_name"] == "my-team/" + dashboard.CHART_NAME
    assert panel["chart_strings"]["y_title"] == "test return (team reward summed over an episode)"
    # the chart: median line with points, 25th-75th percentile band only where >= 3 seeds
    chart = spec["chart"]["spec"]
    ops = {a["op"]: a["as"] for a in chart["transform"][2]["aggregate"]}
    assert (ops["median"], ops["q1"], ops["q3"]) == ("median", "q1", "q3")
    band, line = chart["layer"]
    assert band["transform"] == [{"filter": "datum.seeds >= 3"}] and band["encoding"]["y2"] == {"field": "q3"}
    assert line["mark"] == {"type": "line", "point": True}
    assert dashboard.main(["--entity", "my-team", "--project", "lica-ablations", "--runs", str(tmp_path / "mpe"),
                           "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [b["env"] for b in printed["blocks"] if b["type"] == "PanelGrid"] == ["mpe:spread(n=3)"]


def test_dashboard_builds_reports_api_objects_and_needs_a_key_to_publish(monkeypatch, tmp_path):
    made: list[tuple[str, dict]] = []

    def recorder(name):
        def make(**kwargs):
            made.append((name, kwargs))
            return types.SimpleNamespace(kind=name, **kwargs)
        return make

    names = ("Report", "H1", "H2", "P", "PanelGrid", "Runset", "CustomChart")
    wr = types.SimpleNamespace(**{n: recorder(n) for n in names})
    spec = dashboard.dashboard_spec("e", "p", fake_runs(tmp_path))
    report = dashboard.build_report(spec, wr=wr)
    assert report.kind == "Report" and report.project == "p"
    grids = [b for b in report.blocks if b.kind == "PanelGrid"]
    assert [g.runsets[0].groupby for g in grids] == [["config.variant"]] * 2
    assert [p.chart_fields["y"] for p in grids[1].panels] == [
        "test/return_mean", "test/battle_won_mean", "train/policy_entropy"]
    # the real Reports API (wandb-workspaces, a dev dependency) takes the spec's arguments
    real = dashboard.build_report(spec)
    (grid, _) = [b for b in real.blocks if type(b).__name__ == "PanelGrid"]
    assert type(grid.panels[0]).__name__ == "CustomChart" and grid.panels[0].chart_name == f"e/{dashboard.CHART_NAME}"
    assert grid.runsets[0].groupby == ["config.variant"]
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(dashboard.DashboardError, match="API key"):
        dashboard.publish(spec)
