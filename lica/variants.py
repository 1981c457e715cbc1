"""What a run's *variant* is: the one definition every comparison in lica uses.

A variant is the set of **learning-relevant settings** of a run: its whole composed config
(``lica/conf/train.yaml`` after overrides, flattened to dotted keys) minus the seed and the
execution-only keys of :data:`EXECUTION_ONLY` (worker processes, logger, paths, launcher,
progress bar, checkpoint interval, threads, accelerator: they change how a run executes,
not what it learns).  Two runs are seeds of the same variant exactly when these settings
are equal; :func:`variant_id` is a short hash of them.

Among the runs being compared (the jobs of one sweep, the runs of one folder), a variant
is **labelled by what differs** (:func:`assign`): every learning-relevant key whose value
is not the same in all runs, in the paper's words where there are some:

* ``algo.name``: ``LICA`` / ``COMA``;
* ``env.backend``, ``env.scenario``, ``env.n_agents``: one env label with the agent
  count, ``mpe:spread(n=3)`` (none for maps that fix the team, ``smac:5m_vs_6m``);
* the facets the run's algorithm defines (its config's ``labels()``, lica/config.py):
  ``algo.critic``: ``C_Mix`` / ``C_MLP``; ``algo.entropy`` with its coefficient: ``ξ=0.1``
  (adaptive, Eq. 6) / ``β=0.15`` (vanilla, Eq. 5); ``algo.actor_input``: ``π input`` /
  ``Gumbel input``; a facet an algorithm does not have (COMA's critic and actor input) is
  not shown for its runs;
* any other key as ``<last part of the key>=<value>``, e.g. ``actor_lr=0.01``.

Settings that follow from the algorithm or the environment (a COMA run's β=0, the per-env
ξ and learning rates of ``lica/conf/task/*.yaml``) are left out of the label when, across the
compared runs, they are a function of the algorithm and env labels; if two variants would
then share a label, the keys that tell them apart are added.  When nothing differs, the
label is the description of the runs (:func:`describe`: ``LICA, C_Mix, ξ=0.1,
mpe:spread(n=3)``).

Users: the end-of-sweep report (:mod:`lica.hydra_callbacks`), the sweep planner
(``hydra_plugins/lica_sweeper``), :mod:`lica.plot`, :mod:`lica.dashboard` and the W&B
group, tags and config (:mod:`lica.loggers`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig

from lica.config import ActorCriticConfig, TrainConfig, algo_config, plain_config

# Settings that change how a run executes, not what it learns (prefixes of dotted keys).
EXECUTION_ONLY = (
    "seed", "name", "output_dir", "ckpt_path", "resume", "logger", "hydra",
    "trainer.enable_progress_bar", "trainer.log_every_s", "trainer.checkpoint_every_iters", "trainer.accelerator",
    "trainer.devices", "trainer.torch_threads", "algo.critic_fast_path",
    "rollout.num_workers", "rollout.test_num_workers", "rollout.worker_timeout_s", "rollout.start_method",
)
ENV_KEYS = ("env.backend", "env.scenario", "env.n_agents")
ENTROPY_KEYS = ("algo.entropy", "algo.entropy_coef", "algo.beta")
# Keys shown by a paper-name facet (in label order); every other differing key is shown as key=value.
FACETS = (("algo", ("algo.name",)), ("critic", ("algo.critic",)), ("entropy", ENTROPY_KEYS),
          ("actor_input", ("algo.actor_input",)), ("env", ENV_KEYS))
_MISSING = "<unset>"


@dataclass(frozen=True)
class Variant:
    """One run's variant among the runs it is compared with."""

    id: str  # variant_id(): the same for every seed of the variant
    label: str  # what differs across the compared runs (or the description when nothing does)
    env: str  # env label with the agent count, e.g. mpe:spread(n=3)


# -- the settings ----------------------------------------------------------------------
def flatten(config: Any) -> dict[str, Any]:
    """A composed config (``TrainConfig``, ``DictConfig`` or nested dict) as
    ``{"algo.actor_lr": 0.0003, ...}`` with interpolations resolved and choices as names."""
    if dataclasses.is_dataclass(config) or isinstance(config, DictConfig):
        config = plain_config(config)
    out: dict[str, Any] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, Mapping) and v:
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(config, "")
    return out


def execution_only(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in EXECUTION_ONLY)


@functools.lru_cache(maxsize=None)
def schema_defaults(algo_name: str) -> dict[str, Any]:
    """The flattened defaults of the schema, with ``algo=<algo_name>``'s config class."""
    from omegaconf import OmegaConf

    schema = TrainConfig(algo=algo_config({"name": algo_name}))
    return flatten(OmegaConf.to_container(OmegaConf.structured(schema), enum_to_str=True))


def learning_settings(config: Any) -> dict[str, Any]:
    """The flattened config without the seed and the execution-only keys.  A setting the
    config does not record (added to lica after the run) takes the schema's default, so a
    run from before and one from after a new setting (left at its default) are the same
    variant."""
    settings = flatten(config)
    algo_name = settings.get("algo.name")
    if algo_name is not None:
        settings = {**schema_defaults(str(algo_name)), **settings}
    return {k: v for k, v in settings.items() if not execution_only(k)}


def variant_id(config: Any) -> str:
    """Short hash of the learning-relevant settings: equal for the seeds of a variant,
    different as soon as anything learned differs."""
    settings = learning_settings(config)
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]


# -- labels ----------------------------------------------------------------------------
def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def algorithm(settings: Mapping[str, Any]) -> ActorCriticConfig:
    """The algorithm config of a flattened run (:func:`lica.config.algo_config`), which
    says how its runs are tagged and labelled.  Shared between calls: read it only."""
    algo = {k.removeprefix("algo."): v for k, v in settings.items() if k.startswith("algo.")}
    return _algorithm(json.dumps(algo, sort_keys=True, default=str))


@functools.lru_cache(maxsize=256)
def _algorithm(flat_algo: str) -> ActorCriticConfig:
    nested: dict[str, Any] = {}
    for key, value in json.loads(flat_algo).items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return algo_config(nested)


def env_label(settings: Mapping[str, Any]) -> str:
    """``<backend>:<scenario>(n=<agents>)``; without ``(n=..)`` where the map fixes the team."""
    n = settings.get("env.n_agents")
    return f"{settings.get('env.backend')}:{settings.get('env.scenario')}" + (f"(n={n})" if n is not None else "")


def critic_label(settings: Mapping[str, Any]) -> str:
    """C_Mix / C_MLP (the paper's names); the algorithm's name for an algorithm whose
    critic is its own (COMA)."""
    labels = algorithm(settings).labels()
    return labels["critic"] or labels["algo"]


def entropy_label(settings: Mapping[str, Any]) -> str:
    """ξ=<coef> for the adaptive term (Eq. 6), β=<coef> for the vanilla one (Eq. 5)."""
    return algorithm(settings).labels()["entropy"]


def _facet(name: str, s: Mapping[str, Any], description: bool = False) -> str:
    """A facet's text for one run ('' where it does not apply to the run's algorithm, or,
    in a ``description``, where it is the algorithm's usual choice)."""
    if name == "env":
        return env_label(s)
    config = algorithm(s)
    return (config.description_labels() if description else config.labels())[name]


def describe(config: Any) -> str:
    """The run in the paper's words: ``LICA, C_Mix, ξ=0.1, mpe:spread(n=3)``,
    ``COMA, β=0, mpe:spread(n=3)``; the actor input only when it is not π."""
    s = learning_settings(config)
    return ", ".join(p for p in (_facet(name, s, description=True) for name, _ in FACETS) if p)


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """The last part of each dotted key, longer where two keys would read the same."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            short = ".".join(parts[-n:])
            if sum(1 for k in keys if k == short or k.endswith("." + short)) == 1:
                break
        names[key] = short
    return names


def _is_function_of(determinant: Sequence[Any], values: Sequence[Any]) -> bool:
    seen: dict[Any, Any] = {}
    return all(seen.setdefault(d, v) == v for d, v in zip(determinant, values))


def assign(configs: Sequence[Any]) -> list[Variant]:
    """The :class:`Variant` of each run, labelled by what differs among ``configs``
    (composed configs of the compared runs, in any form :func:`flatten` takes)."""
    runs = [learning_settings(c) for c in configs]
    ids = [variant_id(c) for c in configs]
    envs = [env_label(s) for s in runs]
    if len(set(ids)) <= 1:
        return [Variant(id=i, label=describe(c), env=e) for i, c, e in zip(ids, configs, envs)]
    keys = sorted(set().union(*runs))
    canon = [{k: fmt(s.get(k, _MISSING)) for k in keys} for s in runs]
    differing = [k for k in keys if len({c[k] for c in canon}) > 1]
    facet_of = {k: name for name, ks in FACETS for k in ks}
    # columns: (facet or key, texts per run); a facet counts when one of its keys differs
    columns: list[tuple[str, list[str]]] = []
    for name, fkeys in FACETS:
        if any(k in differing for k in fkeys):
            columns.append((name, [_facet(name, s) for s in runs]))
    generic = [k for k in differing if k not in facet_of]
    short = _short_names(generic)
    columns += [(k, [f"{short[k]}={c[k]}" for c in canon]) for k in generic]
    # settings that follow from the algorithm and env labels are not shown
    shown = dict(columns)
    determinant = list(zip(shown.get("algo", [""] * len(runs)), shown.get("env", [""] * len(runs))))
    if "algo" in shown or "env" in shown:
        columns = [(n, texts) for n, texts in columns
                   if n in ("algo", "env") or not _is_function_of(determinant, texts)]
    labels = [", ".join(t for t in texts if t) for texts in zip(*(texts for _, texts in columns))]
    # variants the shown columns do not tell apart: add the keys that do
    by_label: dict[str, set[str]] = {}
    for label, i in zip(labels, ids):
        by_label.setdefault(label, set()).add(i)
    for label, members in by_label.items():
        if len(members) < 2:
            continue
        rows = [j for j, lab in enumerate(labels) if lab == label]
        extra = [k for k in differing if len({canon[j][k] for j in rows}) > 1]
        names = _short_names(extra)
        for j in rows:
            labels[j] = ", ".join([p for p in (label,) if p] + [f"{names[k]}={canon[j][k]}" for k in extra])
    return [Variant(id=i, label=lab, env=e) for i, lab, e in zip(ids, labels, envs)]


def common_description(configs: Sequence[Any]) -> str:
    """What the compared runs share, in the paper's words (facets that differ left out)."""
    runs = [learning_settings(c) for c in configs]
    parts = []
    for name, _ in FACETS:
        texts = {_facet(name, s, description=True) for s in runs}
        if len(texts) == 1 and (text := texts.pop()):
            parts.append(text)
    return ", ".join(parts)


# -- run folders -----------------------------------------------------------------------
def run_config(run_dir: str | Path) -> dict[str, Any]:
    """The composed config of a run folder: ``.hydra/config.yaml`` (Hydra runs and every
    job of a multirun, failed ones included), else ``csv/hparams.yaml`` (the config the
    loggers recorded).  Raises ``FileNotFoundError`` naming both."""
    from omegaconf import OmegaConf

    run_dir = Path(run_dir)
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if hydra_cfg.exists():
        return OmegaConf.to_container(OmegaConf.load(hydra_cfg), resolve=True)
    for hparams in sorted(run_dir.glob("*/hparams.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(hparams), resolve=True)
        if "algo" in data and "env" in data:
            return {k: v for k, v in data.items() if k not in ("tags", "env_install")}
    raise FileNotFoundError(f"cannot tell which variant {run_dir} is: it has neither .hydra/config.yaml "
                            "nor csv/hparams.yaml")


def run_tags(config: Any) -> dict[str, Any]:
    """The fields runs are tagged with (``csv/hparams.yaml``, ``summary.json``, W&B tags):
    the algorithm's own (:meth:`lica.config.ActorCriticConfig.tags`), the env and the seed."""
    s = flatten(config)
    return {**algorithm(s).tags(), "env": env_label(s), "seed": s["seed"]}
