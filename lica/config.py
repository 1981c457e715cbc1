"""Dataclass schemas for every config group, the algorithm registry, and the checks.

``lica/conf/train.yaml`` starts its defaults list with ``train_schema`` (the
:class:`TrainConfig` below), so every composed config is type-checked: an unknown key
(``algo.entropy_coeff=...``), a wrong type (``algo.gamma=high``) or a choice that does not
exist (``algo.critic=transformer``: choice fields are Enums) fails at compose time with
Hydra's own message.  :func:`validate` then rejects values that type-check but are
impossible (a negative ξ, a batch of 0 episodes).

Algorithms: :data:`ALGORITHMS` maps each name to its config class (a subclass of
:class:`ActorCriticConfig`, registered in Hydra's ``algo`` group by
:func:`register_configs`, so ``algo=<name>`` selects it) and its LightningModule.  The
config class holds the algorithm's defaults (the single place they live), its checks
(:meth:`ActorCriticConfig.problems`) and how its runs are tagged and labelled
(:meth:`ActorCriticConfig.tags`, :meth:`ActorCriticConfig.labels`).  Adding an
algorithm: its module, its config class, one line in :data:`ALGORITHMS`.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parent / "conf"  # the Hydra configs (package data)


class Choice(str, Enum):
    """A config choice: OmegaConf accepts only its members' names (which are their values),
    and a member compares equal to its name, so ``algo.critic == "mix"`` reads naturally."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Backend(Choice):
    """The env backend (a module in ``lica/envs``)."""

    mpe = "mpe"  # mpe2: Cooperative Navigation, Predator-Prey
    jax = "jax"  # JaxMARL: MPE spread and SMAX under jit + vmap
    smac = "smac"  # StarCraft II SMAC


class Critic(Choice):
    mix = "mix"  # C_Mix, the hypernetwork critic (Eq. 1)
    mlp = "mlp"  # C_MLP (Fig. A2)


class EntropyTerm(Choice):
    adaptive = "adaptive"  # -ξ·H/sg(H) (Eq. 6)
    vanilla = "vanilla"  # -β·H (Eq. 5)


class ActorInput(Choice):
    probs = "probs"  # the action probabilities (Eq. 4)
    gumbel = "gumbel"  # straight-through Gumbel-Softmax samples


class CriticTarget(Choice):
    taken = "taken"  # Q̄(s, u) of the taken actions (the reference)
    expected = "expected"  # Q̄(s, π) of the current policy


class AgentType(Choice):
    rnn = "rnn"  # Linear-ReLU-GRUCell-Linear
    mlp = "mlp"  # Linear-ReLU-Linear


@dataclass
class EnvConfig:
    """Which environment, and its settings (``lica/conf/env/<env>.yaml`` sets them).
    ``backend`` picks the module in ``lica/envs``; ``scenario`` the task within it (an
    MPE scenario, a SMAX/SMAC map)."""

    backend: Backend = MISSING
    scenario: str = MISSING  # spread | predator_prey | <map name>
    n_agents: Optional[int] = None  # for scenarios that take a team size (spread); None: the scenario's own
    episode_limit: Optional[int] = None  # None: the environment's own limit
    args: dict[str, Any] = field(default_factory=dict)  # backend-specific keyword args


@dataclass
class RolloutConfig:
    """On-policy collection (docs/algorithm.md §6): B episodes per batch, one per parallel env."""

    batch_episodes: int = 32  # b: episodes per training batch = parallel training envs
    num_workers: int = 2  # W worker processes (each owns batch_episodes / W envs); 0 = in-process
    test_episodes: int = 32  # greedy episodes per evaluation
    test_num_workers: int = 0  # worker processes for the evaluation envs; 0 = in-process
    eval_interval: int = 20_000  # env steps between evaluations
    worker_timeout_s: float = 120.0  # a worker silent for this long is declared hung
    start_method: str = "spawn"  # multiprocessing start method for env workers


@dataclass
class AgentConfig:
    """Decentralised policy (docs/algorithm.md §2)."""

    type: AgentType = AgentType.rnn
    hidden_dim: int = 64
    shared: bool = True  # one network for all agents (SMAC) or one per agent (paper's MPE)
    obs_last_action: bool = True  # input ⊕ one-hot previous action
    obs_agent_id: bool = True  # input ⊕ one-hot agent id


@dataclass
class ActorCriticConfig:
    """What every multi-agent actor-critic in lica shares (``lica/algos/base.py``): the
    discount and TD(λ) targets, the two Adam optimisers, the target critic, the entropy
    term of the actor loss and the decentralised agents.  ``name`` is the key of the
    algorithm in :data:`ALGORITHMS` (set when the config is registered)."""

    name: str = MISSING
    gamma: float = 0.99
    td_lambda: float = 0.8  # 0 = one-step TD (the paper's MPE setting)
    actor_lr: float = 0.0025
    critic_lr: float = 0.0005
    grad_norm_clip: float = 10.0
    target_update_interval: int = 200  # critic gradient steps between hard target copies
    target_tau: float = 0.0  # > 0: soft (Polyak) target update by this fraction after every critic step
    bootstrap_on_timeout: bool = False  # reference: a time-out is stored as terminal
    entropy: EntropyTerm = EntropyTerm.adaptive
    entropy_coef: float = 0.06  # ξ (adaptive term)
    beta: float = 0.15  # β (vanilla term)
    entropy_eps: float = 1e-6  # floor on sg(H̄) in the adaptive term (logged when hit)
    agent: AgentConfig = field(default_factory=AgentConfig)

    @property
    def entropy_weight(self) -> float:
        """The entropy term's coefficient: ξ (``entropy_coef``) for the adaptive term of
        Eq. 6, β (``beta``) for the vanilla term of Eq. 5."""
        return self.entropy_coef if self.entropy == EntropyTerm.adaptive else self.beta

    def problems(self) -> list[str]:
        """Settings that type-check but cannot work, each naming the fix."""
        checks = [
            (0.0 <= self.gamma <= 1.0, "algo.gamma must lie in [0, 1]"),
            (0.0 <= self.td_lambda <= 1.0, "algo.td_lambda must lie in [0, 1] (0 = one-step TD)"),
            (self.entropy_coef >= 0, "algo.entropy_coef (xi) must be >= 0"),
            (self.beta >= 0, "algo.beta must be >= 0"),
            (self.actor_lr > 0 and self.critic_lr > 0, "algo.actor_lr and algo.critic_lr must be > 0"),
            (self.grad_norm_clip > 0, "algo.grad_norm_clip must be > 0"),
            (self.target_update_interval >= 1, "algo.target_update_interval must be >= 1"),
            (0.0 <= self.target_tau <= 1.0, "algo.target_tau must lie in [0, 1] (0 = hard copies)"),
            (self.agent.hidden_dim >= 1, "algo.agent.hidden_dim must be >= 1"),
        ]
        return [msg for ok, msg in checks if not ok]

    def tags(self) -> dict[str, Any]:
        """The fields runs are tagged and compared by (``csv/hparams.yaml``, ``summary.json``,
        W&B): the algorithm, its critic, the entropy term and its coefficient, and what the
        actor's update feeds on.  An algorithm with its own kind of critic is tagged by its
        name; a policy-gradient actor learns from sampled actions."""
        return {"algo": self.name, "critic": self.name, "entropy": self.entropy.value,
                "entropy_coef": self.entropy_weight, "actor_input": "sampled"}

    def labels(self) -> dict[str, str]:
        """The run's facets in the paper's words (:mod:`lica.variants`): ``LICA``,
        ``C_Mix``, ``ξ=0.1``, ``π input``; '' where a facet does not apply."""
        coef = f"{self.entropy_weight:g}"
        return {"algo": self.name.upper(), "critic": "",
                "entropy": f"ξ={coef}" if self.entropy == EntropyTerm.adaptive else f"β={coef}",
                "actor_input": ""}

    def description_labels(self) -> dict[str, str]:
        """:meth:`labels` as a run's description shows them (the usual choices left out)."""
        return self.labels()


@dataclass
class LICAConfig(ActorCriticConfig):
    """LICA (docs/algorithm.md §2-§5); the defaults are the reference code's SMAC values."""

    critic_updates: int = 1  # critic gradient steps per batch (same targets), before the actor step
    actor_updates: int = 1  # actor steps per batch, after the critic steps
    critic_minibatch_episodes: int = 0  # > 0: each critic step on this many random episodes of its data
    critic_replay: int = 0  # earlier batches the critic also trains on (0: only the new one, on-policy)
    critic_target: CriticTarget = CriticTarget.taken  # bootstrap on Q̄(s, u) (reference) | Q̄(s, π)
    critic_fast_path: bool = True  # taken one-hot actions through the exact grouped path (False: dense)
    critic: Critic = Critic.mix
    mixing_embed_dim: int = 64  # H
    hypernet_layers: int = 2  # hyper_w1 depth (1 or 2)
    hypernet_embed: Optional[int] = None  # E; None = H·n·|A| as in the reference code
    value_layers: int = 1  # hidden layers of C_Mix's state-value term b2(s) (reference: 1)
    value_width: Optional[int] = None  # their width; None = H as in the reference code
    actor_input: ActorInput = ActorInput.probs
    gumbel_tau: float = 1.0

    def problems(self) -> list[str]:
        checks = [
            (self.critic_updates >= 1, "algo.critic_updates must be >= 1 (critic steps per batch)"),
            (self.actor_updates >= 1, "algo.actor_updates must be >= 1 (actor steps per batch)"),
            (self.critic_minibatch_episodes >= 0, "algo.critic_minibatch_episodes must be >= 0 (0 = all)"),
            (self.critic_replay >= 0, "algo.critic_replay must be >= 0 (earlier batches for the critic)"),
            (self.hypernet_layers in (1, 2), f"algo.hypernet_layers must be 1 or 2, got {self.hypernet_layers}"),
            (self.value_layers >= 1, f"algo.value_layers must be >= 1, got {self.value_layers}"),
            (self.value_width is None or self.value_width >= 1,
             f"algo.value_width must be >= 1 or null (= H), got {self.value_width}"),
            (self.gumbel_tau > 0, "algo.gumbel_tau must be > 0"),
        ]
        return super().problems() + [msg for ok, msg in checks if not ok]

    def tags(self) -> dict[str, Any]:
        return {**super().tags(), "critic": self.critic.value, "actor_input": self.actor_input.value}

    def labels(self) -> dict[str, str]:
        return {**super().labels(), "critic": {Critic.mix: "C_Mix", Critic.mlp: "C_MLP"}[self.critic],
                "actor_input": {ActorInput.probs: "π input", ActorInput.gumbel: "Gumbel input"}[self.actor_input]}

    def description_labels(self) -> dict[str, str]:
        """The actor input only when it is not the action probabilities (the paper's LICA)."""
        labels = self.labels()
        return {**labels, "actor_input": "" if self.actor_input == ActorInput.probs else labels["actor_input"]}


@dataclass
class COMAConfig(ActorCriticConfig):
    """COMA (Foerster et al., AAAI 2018), the paper's baseline, with PyMARL's ``coma.yaml``
    values: lr 0.0005 for actor and critic, no entropy bonus (vanilla with β = 0); the
    rest as PyMARL's ``default.yaml`` (γ 0.99, TD(λ = 0.8), target copy every 200 critic
    steps, gradient-norm clip 10).  Its critic Q(s, u^-a, ·) and the counterfactual policy
    gradient have no settings of their own."""

    actor_lr: float = 0.0005
    entropy: EntropyTerm = EntropyTerm.vanilla
    beta: float = 0.0


@dataclass
class TrainerConfig:
    """Lightning Trainer settings plus the env-step budget."""

    max_env_steps: int = 600_000  # t_max: training stops after this many env steps
    accelerator: str = "cpu"
    devices: int = 1
    checkpoint_every_iters: int = 50  # training iterations between checkpoints
    enable_progress_bar: bool = True  # a bar when stdout is a terminal (else progress lines)
    log_every_s: float = 30.0  # without a bar: one progress line (stdout and train.log) this often
    torch_threads: int = 1  # intra-op threads of the learner
    precision: str = "32-true"  # Lightning precision of the learner: 32-true | bf16-mixed (GPUs with bf16)


@dataclass
class CSVLoggerConfig:
    name: str = "csv"


@dataclass
class WandbLoggerConfig:
    """Weights & Biases run settings (``logger=wandb``; built in ``lica/loggers.py``)."""

    project: Optional[str] = None  # None: $WANDB_PROJECT, else "lica"
    entity: Optional[str] = None  # None: $WANDB_ENTITY, else the API key's default entity
    mode: Optional[str] = None  # online | offline | disabled; None: $WANDB_MODE, else offline without an API key
    group: Optional[str] = None  # None: the run's variant, "<label> [<variant id>]" (lica/variants.py)
    tags: list[str] = field(default_factory=list)  # added to the automatic critic:/entropy:/env:... tags
    name: Optional[str] = None  # run display name; None: "<name> | <variant label> | seed <seed>"
    job_type: Optional[str] = None
    init_timeout_s: float = 60.0  # online only: after this long without the server, log offline instead


@dataclass
class TensorBoardLoggerConfig:
    name: str = "tensorboard"  # <run dir>/<name>/: the event files


@dataclass
class LoggerConfig:
    csv: Optional[CSVLoggerConfig] = None
    wandb: Optional[WandbLoggerConfig] = None
    tensorboard: Optional[TensorBoardLoggerConfig] = None


@dataclass
class TrainConfig:
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algo: ActorCriticConfig = MISSING  # the config class of the algorithm chosen with algo=<name>
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    name: str = "${algo.name}_${env.scenario}"  # experiment name (W&B group, output folder suffix)
    ckpt_path: Optional[str] = None  # resume from this checkpoint
    resume: bool = False  # resume from the run folder's last checkpoint if there is one
    output_dir: Optional[str] = None  # None: Hydra's run folder


# -- the algorithm registry -------------------------------------------------------------------
@dataclass(frozen=True)
class Algorithm:
    """A learning algorithm: its config class and its LightningModule, named
    ``"<module>:<class>"`` (imported when a run builds it, so configs, labels and figures
    need no torch)."""

    config: type[ActorCriticConfig]
    module: str


ALGORITHMS: dict[str, Algorithm] = {
    "lica": Algorithm(LICAConfig, "lica.algos.lica:LICA"),
    "coma": Algorithm(COMAConfig, "lica.algos.coma:COMA"),
}


def algo_config(values: Mapping[str, Any]) -> ActorCriticConfig:
    """The config object of a saved ``algo`` section (a composed config from a file, a
    checkpoint or a flattened run): the registered class of ``values["name"]`` (the shared
    :class:`ActorCriticConfig` for an algorithm this lica does not know), with the keys that
    class has; settings added since take their defaults."""
    name = str(values["name"])
    cls = ALGORITHMS[name].config if name in ALGORITHMS else ActorCriticConfig
    node = OmegaConf.structured(cls(name=name))
    known = {f.name for f in fields(cls)}
    return OmegaConf.to_object(OmegaConf.merge(node, {k: v for k, v in values.items() if k in known}))


def train_config(config: Mapping[str, Any] | DictConfig) -> TrainConfig:
    """A composed config (plain or DictConfig, e.g. read back from a run or a checkpoint)
    as a :class:`TrainConfig` of its algorithm's schema."""
    plain = plain_config(config) if isinstance(config, DictConfig) else dict(config)
    schema = OmegaConf.structured(TrainConfig(algo=algo_config(plain["algo"])))
    return OmegaConf.to_object(OmegaConf.merge(schema, {**plain, "algo": {}}))


def plain_config(config: Any) -> dict[str, Any]:
    """A composed config (DictConfig or schema object) as plain containers, interpolations
    resolved and choices as their names: what checkpoints, ``hparams.yaml`` and W&B store."""
    if is_dataclass(config):
        config = OmegaConf.structured(config)
    return OmegaConf.to_container(config, resolve=True, enum_to_str=True)


def register_configs() -> None:
    """Register the schema (``train_schema``, named first in ``lica/conf/train.yaml``) and
    every algorithm of :data:`ALGORITHMS` as ``algo=<name>``."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, algorithm in ALGORITHMS.items():
        cs.store(group="algo", name=name, node=algorithm.config(name=name))


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """``lica/conf/train.yaml`` composed as ``python -m lica.train <overrides>`` composes it
    (without the ``hydra`` node)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return hydra_compose(config_name="train", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


# -- checks -----------------------------------------------------------------------------------
START_METHODS = tuple(multiprocessing.get_all_start_methods())  # multiprocessing start methods here
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
MAX_SEED = 2**32 - 1  # Lightning's seed_everything and numpy's legacy seeding stop here


def validate(cfg: TrainConfig) -> None:
    """Reject settings that type-check but cannot work, naming the fix."""
    algorithm = ALGORITHMS.get(cfg.algo.name)
    checks = [
        (algorithm is not None, f"algo.name={cfg.algo.name!r} is not an algorithm lica knows: choose one with "
         + ", ".join(f"algo={name}" for name in ALGORITHMS)),
        (algorithm is None or type(cfg.algo) is algorithm.config,
         f"algo.name={cfg.algo.name} does not match the algorithm's settings ({type(cfg.algo).__name__}): "
         f"choose the algorithm with algo={cfg.algo.name}, not algo.name=..."),
        (cfg.rollout.batch_episodes >= 1, "rollout.batch_episodes must be >= 1 (the paper uses 32)"),
        (cfg.rollout.test_episodes >= 1, "rollout.test_episodes must be >= 1"),
        (cfg.rollout.num_workers >= 0, "rollout.num_workers must be >= 0 (0 = envs in-process)"),
        (cfg.rollout.eval_interval >= 1, "rollout.eval_interval must be >= 1 env step"),
        (cfg.trainer.max_env_steps >= 1, "trainer.max_env_steps must be >= 1"),
        (cfg.trainer.checkpoint_every_iters >= 1, "trainer.checkpoint_every_iters must be >= 1"),
        (cfg.trainer.precision in ("32-true", "bf16-mixed"),
         f"trainer.precision must be '32-true' or 'bf16-mixed', got {cfg.trainer.precision!r}"),
        (cfg.rollout.num_workers == 0 or cfg.rollout.batch_episodes % cfg.rollout.num_workers == 0,
         f"rollout.num_workers={cfg.rollout.num_workers} must divide "
         f"rollout.batch_episodes={cfg.rollout.batch_episodes}"),
        (cfg.rollout.test_num_workers == 0 or cfg.rollout.test_episodes % cfg.rollout.test_num_workers == 0,
         f"rollout.test_num_workers={cfg.rollout.test_num_workers} must divide "
         f"rollout.test_episodes={cfg.rollout.test_episodes}"),
        (cfg.rollout.test_num_workers >= 0, "rollout.test_num_workers must be >= 0 (0 = evaluation envs in-process)"),
        (cfg.rollout.worker_timeout_s > 0, "rollout.worker_timeout_s must be > 0 seconds (how long an env worker may "
         "stay silent before it is declared hung; the default is 120)"),
        (cfg.rollout.start_method in START_METHODS, f"rollout.start_method must be one of {', '.join(START_METHODS)} "
         f"(spawn is the default), got {cfg.rollout.start_method!r}"),
        (cfg.env.n_agents is None or cfg.env.n_agents >= 1,
         f"env.n_agents must be >= 1 (or null: the scenario's own team size), got {cfg.env.n_agents}"),
        (cfg.env.episode_limit is None or cfg.env.episode_limit >= 1,
         f"env.episode_limit must be >= 1 env step (or null: the environment's own limit), got {cfg.env.episode_limit}"),
        (0 <= cfg.seed <= MAX_SEED, f"seed must lie in [0, {MAX_SEED}] (what every seeded RNG accepts), got {cfg.seed}"),
        (cfg.trainer.torch_threads >= 1, "trainer.torch_threads must be >= 1 (the learner's intra-op threads; "
         "the default is 1)"),
        (cfg.trainer.devices == 1, f"trainer.devices must be 1, got {cfg.trainer.devices}: lica learns in one process "
         "on one device; run more seeds or variants side by side as a multirun instead (-m seed=0,1,2)"),
        (cfg.trainer.accelerator in ACCELERATORS, f"trainer.accelerator must be one of {', '.join(ACCELERATORS)}, "
         f"got {cfg.trainer.accelerator!r}"),
        (cfg.trainer.log_every_s > 0, "trainer.log_every_s must be > 0 seconds (between two progress lines)"),
    ]
    if cfg.trainer.accelerator in ("gpu", "cuda"):  # before Lightning's "No supported gpu backend found!"
        import torch

        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        checks.append((torch.cuda.is_available(),
                       f"trainer.accelerator={cfg.trainer.accelerator} but torch {torch.__version__} ({build}) "
                       "finds no CUDA GPU: run with trainer.accelerator=cpu, or on a GPU machine with a CUDA "
                       "build of torch"))
    problems = [msg for ok, msg in checks if not ok] + cfg.algo.problems()
    if problems:
        raise ValueError("Invalid lica config:\n  - " + "\n  - ".join(problems))
