"""The SMAC adapter (lica/envs/smac.py), run against the SMAC stand-in in
tests/smac_standin -- StarCraft II cannot run on the machines these tests run on."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from lica.config import EnvConfig
from lica.envs import base

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.smac_standin import StarCraft2Env as StandIn  # noqa: E402
from tests.conftest import compose_config  # noqa: E402
from tests.smac_standin import get_map_params as standin_map_params  # noqa: E402

smac_mod = importlib.import_module("lica.envs.smac")
SMACEnv = smac_mod.SMACEnv

# Real SMAC sizes (obs, state, actions) with the reference settings.
SMAC_SIZES = {"5m_vs_6m": (5, 55, 98, 12), "2s3z": (5, 80, 120, 11), "MMM2": (10, 176, 322, 18)}


def make(scenario="5m_vs_6m", seed=0, episode_limit=None, **args) -> SMACEnv:
    cfg = EnvConfig(backend="smac", scenario=scenario, n_agents=None,
                    episode_limit=episode_limit, args=args)
    return SMACEnv(cfg, seed=seed, env_cls=StandIn, get_map_params=standin_map_params)


def attack_policy(o: base.Observation) -> np.ndarray:
    """First available attack, else move east, else stop (no-op when dead)."""
    acts = []
    for av in o.avail:
        if av[0]:
            acts.append(0)
        elif av[6:].any():
            acts.append(6 + int(np.flatnonzero(av[6:])[0]))
        else:
            acts.append(4 if av[4] else 1)
    return np.array(acts)


def stop_policy(o: base.Observation) -> np.ndarray:
    return np.where(o.avail[:, 0], 0, 1)


def run_episode(env, policy, seed=None):
    o = env.reset(seed)
    steps = []
    while True:
        o, r, term, trunc, info = env.step(policy(o))
        steps.append((o, r, term, trunc, info))
        if term or trunc:
            return steps


# ------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("scenario", sorted(SMAC_SIZES))
def test_shapes_and_dtypes(scenario):
    n, obs_dim, state_dim, n_actions = SMAC_SIZES[scenario]
    env = make(scenario)
    info = env.get_env_info()
    assert (info.n_agents, info.obs_dim, info.state_dim, info.n_actions) == \
        (n, obs_dim, state_dim, n_actions)
    assert info.reports_wins and info.episode_limit == standin_map_params(scenario)["limit"]
    o = env.reset(0)
    assert isinstance(o, base.Observation)
    assert o.obs.shape == (n, obs_dim) and o.obs.dtype == np.float32
    assert o.state.shape == (state_dim,) and o.state.dtype == np.float32
    assert o.avail.shape == (n, n_actions) and o.avail.dtype == np.bool_
    assert o.avail.any(axis=1).all() and not o.avail[:, 0].any()  # live: no no-op
    o2, r, term, trunc, info_step = env.step(attack_policy(o))
    assert o2.obs.shape == (n, obs_dim) and isinstance(r, float)
    assert isinstance(term, bool) and isinstance(trunc, bool)
    assert set(info_step) >= {"battle_won", "episode_limit"}
    env.close()
    env.close()  # idempotent


def test_reference_args_reach_starcraft2env():
    env = make("2s3z", obs_last_action=True)
    raw = env.smac_env
    assert raw.difficulty == "7" and raw._step_mul == 8 and raw.continuing_episode is False
    assert raw.reward_only_positive and raw.reward_scale and raw.reward_scale_rate == 20
    assert raw.reward_death_value == 10 and raw.reward_win == 200 and raw.state_last_action
    assert raw.obs_last_action is True  # cfg.args override the reference values
    assert raw.seed() == 0


def test_win_flag_propagates():
    env = make("5m_vs_6m")
    steps = run_episode(env, attack_policy, seed=1)
    _, r, term, trunc, info = steps[-1]
    assert term and not trunc and info["battle_won"] is True and info["episode_limit"] is False
    assert r > 0 and all(not s[4]["battle_won"] for s in steps[:-1])
    assert info["dead_enemies"] == 6
    # the final observation: dead agents have only the no-op available
    final = steps[-1][0]
    assert final.avail.any(axis=1).all()


def test_defeat_is_terminal_not_truncated():
    env = make("5m_vs_6m")
    steps = run_episode(env, stop_policy, seed=2)
    _, _, term, trunc, info = steps[-1]
    assert len(steps) < 70 and term and not trunc and not info["battle_won"]
    dead = steps[-1][0].avail
    assert (dead[:, 0] & ~dead[:, 1:].any(axis=1)).all()  # every agent dead: only no-op


@pytest.mark.parametrize("continuing", [False, True])
def test_time_out_is_truncated(continuing):
    # Real SMAC sets info["episode_limit"] only with continuing_episode=True; with the
    # reference False the adapter must still see the time-out.
    env = make("5m_vs_6m", episode_limit=5, continuing_episode=continuing)
    assert env.get_env_info().episode_limit == 5
    steps = run_episode(env, stop_policy, seed=3)
    assert len(steps) == 5
    _, _, term, trunc, info = steps[-1]
    assert trunc and not term and info["episode_limit"] and not info["battle_won"]
    assert not any(s[2] or s[3] for s in steps[:-1])


def test_defeat_on_the_last_allowed_step_is_not_a_time_out():
    seed = 4
    length = len(run_episode(make("5m_vs_6m", seed=seed), stop_policy))
    env = make("5m_vs_6m", seed=seed, episode_limit=length)  # same dynamics, limit == length
    steps = run_episode(env, stop_policy)
    assert len(steps) == length
    _, _, term, trunc, info = steps[-1]
    assert term and not trunc and not info["episode_limit"]


def test_time_out_on_the_maps_own_limit(monkeypatch):
    from tests.smac_standin import starcraft2

    monkeypatch.setitem(starcraft2._DIFFICULTY_DAMAGE, "1", 0.0)  # harmless enemies
    env = make("3m", difficulty="1")
    steps = run_episode(env, stop_policy, seed=5)
    assert len(steps) == 60 == env.get_env_info().episode_limit
    assert steps[-1][3] and not steps[-1][2] and steps[-1][4]["episode_limit"]


def test_sc2_restart_comes_out_as_truncated(monkeypatch):
    env = make("5m_vs_6m")
    o = env.reset(0)
    monkeypatch.setattr(env.smac_env, "step", lambda actions: (0, True, {}))
    _, r, term, trunc, info = env.step(stop_policy(o))
    assert trunc and not term and info["sc2_restart"] and r == 0.0


def test_seeding():
    # the seed of the first reset seeds the game (the SMAC object is rebuilt before launch)
    a = make("5m_vs_6m", seed=None)
    oa = a.reset(7)
    assert a.smac_env.seed() == 7 and a.smac_env.launches == 1
    b = make("5m_vs_6m", seed=7)  # seeded at construction
    ob = b.reset()
    np.testing.assert_array_equal(oa.state, ob.state)
    # later seeds are recorded and ignored: no relaunch, the game's RNG runs on
    oa2 = a.reset(8)
    ob2 = b.reset()
    assert a.smac_env.launches == 1 and a.smac_env.seed() == 7 and a.last_reset_seed == 8
    np.testing.assert_array_equal(oa2.state, ob2.state)
    assert not np.array_equal(oa2.state, oa.state)


def test_n_agents_mismatch_rejected():
    cfg = EnvConfig(backend="smac", scenario="5m_vs_6m", n_agents=3, episode_limit=None)
    with pytest.raises(ValueError, match="n_agents"):
        SMACEnv(cfg, env_cls=StandIn, get_map_params=standin_map_params)


def test_env_cls_hook_from_config():
    cfg = EnvConfig(backend="smac", scenario="2s3z", n_agents=None, episode_limit=None,
                    args={"env_cls": "tests.smac_standin:StarCraft2Env"})
    from lica.envs import make_single_env

    env = make_single_env(cfg)
    assert isinstance(env, SMACEnv) and isinstance(env.smac_env, StandIn)
    assert not env.real_sc2 and env.reset(0).obs.shape == (5, 80)


# -------------------------------------------------------------------------- errors
def test_unknown_map():
    with pytest.raises(ValueError, match="Unknown SMAC map 'nomap'.*5m_vs_6m.*MMM2") as err:
        make("nomap")
    assert "Any other map" in str(err.value)
    with pytest.raises(ValueError, match="Did you mean 'MMM2'"):
        make("mmm2")
    # without a map lookup, the constructor's KeyError (as SMAC raises it) is translated
    cfg = EnvConfig(backend="smac", scenario="nomap", n_agents=None, episode_limit=None)
    with pytest.raises(ValueError, match="Unknown SMAC map 'nomap'"):
        SMACEnv(cfg, env_cls=StandIn)


def test_module_imports_without_smac():
    code = ("import sys; sys.modules['smac'] = None; import lica.envs.smac as m; "
            "assert callable(m.make_env) and 'smac.env' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_missing_smac_gives_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "smac", None)  # as if not installed
    cfg = EnvConfig(backend="smac", scenario="2s3z", n_agents=None, episode_limit=None)
    with pytest.raises(ImportError) as err:
        smac_mod.make_env(cfg)
    msg = str(err.value)
    assert 'pip install "smac @ git+https://github.com/oxwhirl/smac.git"' in msg
    assert "make sc2" in msg and "SMAC3" in msg


def test_smac3_is_recognised(monkeypatch):
    fake = types.ModuleType("smac")  # PyPI's SMAC3: a 'smac' without smac.env
    fake.__path__ = []
    monkeypatch.setitem(sys.modules, "smac", fake)
    monkeypatch.delitem(sys.modules, "smac.env", raising=False)
    cfg = EnvConfig(backend="smac", scenario="2s3z", n_agents=None, episode_limit=None)
    with pytest.raises(ImportError, match="not the StarCraft Multi-Agent Challenge"):
        SMACEnv(cfg)


@pytest.fixture
def fake_smac(monkeypatch):
    """A fake ``smac`` package whose StarCraft2Env is the stand-in."""
    mods = {}
    for name in ("smac", "smac.env", "smac.env.starcraft2", "smac.env.starcraft2.maps"):
        mods[name] = types.ModuleType(name)
        mods[name].__path__ = []
        monkeypatch.setitem(sys.modules, name, mods[name])
    mods["smac"].env = mods["smac.env"]
    mods["smac.env"].starcraft2 = mods["smac.env.starcraft2"]
    mods["smac.env.starcraft2"].maps = mods["smac.env.starcraft2.maps"]
    mods["smac.env"].StarCraft2Env = StandIn
    mods["smac.env.starcraft2.maps"].get_map_params = standin_map_params
    return mods


def _sc2_tree(root: Path, build=75689, maps=("2s3z",)) -> Path:
    (root / "Versions" / f"Base{build}").mkdir(parents=True)
    (root / "Maps" / "SMAC_Maps").mkdir(parents=True)
    for m in maps:
        (root / "Maps" / "SMAC_Maps" / f"{m}.SC2Map").write_bytes(b"")
    return root


def test_sc2_missing_gives_sc2path_error(fake_smac, tmp_path, monkeypatch):
    cfg = EnvConfig(backend="smac", scenario="2s3z", n_agents=None, episode_limit=None)
    monkeypatch.setenv("SC2PATH", str(tmp_path))  # exists, but empty
    with pytest.raises(smac_mod.SC2NotFoundError, match="SC2PATH.*make sc2"):
        SMACEnv(cfg)
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="does not exist.*make sc2"):
        SMACEnv(cfg)
    monkeypatch.delenv("SC2PATH")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(smac_mod.SC2NotFoundError, match="SC2PATH is not set"):
        SMACEnv(cfg)


def test_real_path_with_sc2_present(fake_smac, tmp_path, monkeypatch):
    sc2 = _sc2_tree(tmp_path / "StarCraftII", maps=("2s3z",))
    monkeypatch.setenv("SC2PATH", str(sc2))
    env = smac_mod.make_env(EnvConfig(backend="smac", scenario="2s3z", n_agents=None,
                                      episode_limit=None))
    assert env.real_sc2 and env.sc2_version == "4.10" and env.sc2_path == sc2
    assert env.reset(0).obs.shape == (5, 80)
    # a map SMAC knows but whose .SC2Map is not installed
    with pytest.raises(smac_mod.SC2NotFoundError, match="SMAC map missing.*MMM2"):
        SMACEnv(EnvConfig(backend="smac", scenario="MMM2", n_agents=None, episode_limit=None))
    with pytest.raises(ValueError, match="Unknown SMAC map"):
        SMACEnv(EnvConfig(backend="smac", scenario="nomap", n_agents=None, episode_limit=None))


def test_sc2_version(tmp_path, monkeypatch):
    assert smac_mod.sc2_version(tmp_path) is None
    _sc2_tree(tmp_path, build=69232)
    (tmp_path / "Versions" / "Base75689").mkdir()
    assert smac_mod.sc2_version(tmp_path) == "4.10"  # newest build, as pysc2 picks
    (tmp_path / "Versions" / "Base99999").mkdir()
    assert smac_mod.sc2_version(tmp_path) == "Base99999"
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    info = smac_mod.install_info()
    assert info["sc2_build"] == 99999 and info["sc2_path"] == str(tmp_path)


# ------------------------------------------------------------------------- configs
@pytest.mark.parametrize("scenario,xi,budget", [
    ("2s3z", 0.06, 32_000_000), ("1c3s5z", 0.06, 32_000_000),
    ("5m_vs_6m", 0.11, 64_000_000), ("2c_vs_64zg", 0.06, 64_000_000),
    ("MMM2", 0.06, 64_000_000), ("3s5z_vs_3s6z", 0.03, 64_000_000)])
def test_map_configs(scenario, xi, budget):
    """env=smac_<map>: the env file holds the env only; its task file the map's ξ, budget and
    evaluation schedule, which survive the rest of the defaults list."""
    env_file = OmegaConf.load(ROOT / "lica" / "conf" / "env" / f"smac_{scenario}.yaml")
    assert set(env_file) == {"backend", "scenario", "n_agents", "episode_limit", "args"}
    cfg = compose_config([f"env=smac_{scenario}"])
    assert cfg.env.backend == "smac" and cfg.env.scenario == scenario
    assert cfg.env.n_agents is None and cfg.env.episode_limit is None
    assert cfg.algo.entropy_coef == xi and cfg.trainer.max_env_steps == budget
    assert cfg.rollout.eval_interval == 320_000 and cfg.rollout.test_episodes == 32
    if scenario in smac_mod.PAPER_MAPS and scenario in standin_map_params.__globals__["MAP_PARAMS"]:
        env = SMACEnv(OmegaConf.to_object(cfg).env, env_cls=StandIn,
                      get_map_params=standin_map_params)
        assert env.get_env_info().episode_limit == standin_map_params(scenario)["limit"]


def test_every_smac_run_logs_the_sc2_install(tmp_path, monkeypatch):
    """train() writes the backend's install facts (SC2 version) into the run's hparams."""
    import yaml

    from lica.train import train

    monkeypatch.setenv("SC2PATH", str(tmp_path / "no_sc2_here"))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    cfg = compose_config(["env=smac_2s3z", "+env.args.env_cls=tests.smac_standin:StarCraft2Env",
                          "trainer.max_env_steps=200", "rollout.batch_episodes=2", "rollout.num_workers=0",
                          "rollout.test_episodes=1", "rollout.eval_interval=100", "trainer.enable_progress_bar=false"])
    train(cfg, run_dir=tmp_path / "run")
    hparams = yaml.safe_load((tmp_path / "run" / "csv" / "hparams.yaml").read_text())
    assert "sc2_version" in hparams["env_install"] and hparams["env_install"]["sc2_path"].endswith("no_sc2_here")
