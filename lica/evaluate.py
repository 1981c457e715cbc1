"""Evaluate a saved policy, and watch it.

    python -m lica.evaluate <run dir | checkpoint> [episodes=32] [seed=0] [policy=greedy|sampled]
                            [checkpoint=last|best] [render=2] [name=<file stem>]

Loads the actor from the checkpoint (``checkpoints/last.ckpt`` of a run folder, or
``best.ckpt`` with ``checkpoint=best``, or the file given) and the config it was trained
with (saved in the checkpoint; ``.hydra/config.yaml`` for checkpoints of older lica),
runs ``episodes`` episodes -- one per environment, in this process -- and prints and
writes their test metrics to ``<run dir>/eval/<name>.json``.  ``policy=greedy`` takes the
most probable action (what training's evaluations do), ``policy=sampled`` samples from
the policy with a generator seeded by ``seed``.  Episode ``i`` is reset with the ``i``-th
seed of the ``EVALUATE`` stream of :mod:`lica.seeding` (``SeedSequence([seed, 2])``; training
uses other streams), so the same arguments give the same numbers.  For environments that can draw themselves (mpe2:
``env=spread``, ``spread5``, ``predator_prey``) the first ``render`` episodes are also
written as ``<run dir>/eval/<name>.gif`` (:mod:`lica.render`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from lica.algos import build_module
from lica.config import TrainConfig, train_config
from lica.envs import make_single_env, make_vec_env
from lica.envs.vec import WorkerPoolVecEnv
from lica.render import RecordingEnv, write_gif
from lica.resume import BEST, LAST, CheckpointError, read_checkpoint, saved_config
from lica.rollout import make_collector
from lica.seeding import Stream, episode_seeds, sampling_generator


@dataclass
class EvalArgs:
    episodes: int = 32
    seed: int = 0
    policy: str = "greedy"  # greedy | sampled
    checkpoint: str = "last"  # last | best (for a run folder)
    render: Optional[int] = None  # episodes to animate; None: 2 where the env can be drawn
    name: Optional[str] = None  # output file stem; None: <checkpoint>-<policy>-seed<seed>-n<episodes>


USAGE = __doc__.split("\n\n")[1]


def parse_args(argv: list[str]) -> tuple[Path, EvalArgs]:
    """``<target> key=value ...`` into the target path and :class:`EvalArgs`."""
    if not argv or "=" in argv[0] or argv[0] in ("-h", "--help"):
        raise SystemExit(f"usage:\n{USAGE}")
    fields = {f.name: f for f in dataclasses.fields(EvalArgs)}
    values: dict[str, Any] = {}
    for item in argv[1:]:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"lica.evaluate: unknown argument {item!r}; expected key=value with key one of "
                             f"{', '.join(fields)}\nusage:\n{USAGE}")
        kind = int if key in ("episodes", "seed", "render") else str
        try:
            values[key] = kind(value)
        except ValueError:
            raise SystemExit(f"lica.evaluate: {key} must be an integer, got {value!r}") from None
    args = EvalArgs(**values)
    problems = [msg for ok, msg in (
        (args.episodes >= 1, "episodes must be >= 1"),
        (args.seed >= 0, "seed must be >= 0"),
        (args.policy in ("greedy", "sampled"), f"policy must be greedy or sampled, got {args.policy!r}"),
        (args.checkpoint in ("last", "best"), f"checkpoint must be last or best, got {args.checkpoint!r}"),
        (args.render is None or 0 <= args.render <= args.episodes, "render must lie in [0, episodes]"),
    ) if not ok]
    if problems:
        raise SystemExit("lica.evaluate: " + "; ".join(problems))
    return Path(argv[0]), args


def locate(target: Path, which: str) -> tuple[Path, Path]:
    """``(checkpoint file, run folder)`` for a run folder or a checkpoint file."""
    if target.is_dir():
        ckpt = target / "checkpoints" / (BEST if which == "best" else LAST)
        if not ckpt.is_file():
            raise SystemExit(f"lica.evaluate: {target} has no {ckpt.relative_to(target)} (is it a lica run folder?)")
        return ckpt, target
    if target.is_file():
        return target, target.parent.parent if target.parent.name == "checkpoints" else target.parent
    raise SystemExit(f"lica.evaluate: {target} does not exist")


def run_config(ckpt: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The config the checkpoint was trained with (for checkpoints of older lica, the
    run folder's ``.hydra/config.yaml``)."""
    cfg = saved_config(ckpt)
    if cfg is not None:
        return cfg
    record = run_dir / ".hydra" / "config.yaml"
    if not record.is_file():
        raise SystemExit(f"lica.evaluate: the checkpoint holds no config and {record} does not exist")
    return train_config(OmegaConf.load(record))


def evaluate(target: Path, args: EvalArgs) -> dict[str, Any]:
    """Run the evaluation; returns what is written to the JSON file (and the files' paths)."""
    ckpt_path, run_dir = locate(target, args.checkpoint)
    ckpt = read_checkpoint(ckpt_path)
    cfg = run_config(ckpt, run_dir)
    drawable = cfg.env.backend == "mpe"  # the envs with render_frame() (lica.envs.mpe)
    render = (2 if drawable else 0) if args.render is None else args.render
    if render and not drawable:
        print(f"lica.evaluate: env backend {cfg.env.backend!r} ({cfg.env.scenario}) cannot be drawn; "
              "no animation (render=0)")
        render = 0
    recorders: list[RecordingEnv] = []

    def make_env() -> Any:
        env = make_single_env(cfg.env)
        if len(recorders) < render:
            recorders.append(RecordingEnv(env))
            return recorders[-1]
        return env

    if drawable:
        vec = WorkerPoolVecEnv(make_env, args.episodes, 0)  # in-process: the recorders stay here
    else:
        vec = make_vec_env(cfg.env, args.episodes, 0)
    try:
        module = build_module(cfg.algo, vec.info)
        module.load_state_dict(ckpt["state_dict"])
        seeds = episode_seeds(args.seed, Stream.EVALUATE, args.episodes)
        stats = make_collector(vec).collect(module.actor, seeds, greedy=args.policy == "greedy",
                                            generator=sampling_generator(args.seed)).stats
    finally:
        vec.close()

    name = args.name or f"{ckpt_path.stem}-{args.policy}-seed{args.seed}-n{args.episodes}"
    out_dir = run_dir / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "checkpoint": str(ckpt_path), "checkpoint_env_steps": ckpt["RolloutDataModule"]["env_steps"],
        "env": f"{cfg.env.backend}:{cfg.env.scenario}", "algo": cfg.algo.name, "policy": args.policy,
        "seed": args.seed, "episodes": args.episodes,
        **stats.summary("test", vec.info.reports_wins),
        "test_return_std": float(stats.returns.std()), "test_return_min": float(stats.returns.min()),
        "test_return_max": float(stats.returns.max()), "returns": [float(r) for r in stats.returns],
    }
    if recorders:
        title = f"{cfg.algo.name} on {cfg.env.scenario}, {result['checkpoint_env_steps']:,} env steps ({args.policy})"
        result["animation"] = str(write_gif([r.frames for r in recorders], out_dir / f"{name}.gif", title))
    result["metrics_file"] = str(out_dir / f"{name}.json")
    Path(result["metrics_file"]).write_text(json.dumps(result, indent=2) + "\n")
    return result


def report(r: dict[str, Any]) -> str:
    lines = [f"lica.evaluate: {r['checkpoint']} ({r['checkpoint_env_steps']:,} env steps), {r['episodes']} "
             f"{r['policy']} episodes of {r['env']}, seed {r['seed']}",
             f"   test_return_mean: {r['test_return_mean']:.3f} (std {r['test_return_std']:.3f}, "
             f"min {r['test_return_min']:.3f}, max {r['test_return_max']:.3f})",
             f"   test_ep_length_mean: {r['test_ep_length_mean']:.2f}"]
    if "test_battle_won_mean" in r:
        lines.append(f"   test_battle_won_mean: {r['test_battle_won_mean']:.3f}")
    lines.append(f"   metrics: {r['metrics_file']}")
    if "animation" in r:
        lines.append(f"   animation: {r['animation']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    target, args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = evaluate(target, args)
    except CheckpointError as err:
        raise SystemExit(f"lica.evaluate: {err}") from None
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
