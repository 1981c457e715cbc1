"""Dataclass schemas for every config group, registered in Hydra's ConfigStore.

``lica/conf/train.yaml`` starts its defaults list with ``train_schema`` (the
:class:`TrainConfig` below), so every composed config is type-checked: an unknown key
(``algo.entropy_coeff=...``) or a wrong type (``algo.gamma=high``) fails at compose
time with Hydra's own message.  :func:`validate` then rejects values that type-check
but are impossible (a negative ξ, a batch of 0 episodes).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class EnvConfig:
    """Which environment, and its settings.  ``backend`` picks the module in
    ``lica/envs``; ``scenario`` the task within it (an MPE scenario, a SMAX/SMAC map)."""

    backend: str = "mpe"  # mpe | jax | smac | matrix
    scenario: str = "spread"  # spread | predator_prey | <map name>
    n_agents: Optional[int] = 3  # for scenarios that take a team size (spread)
    episode_limit: Optional[int] = 25  # None: the environment's own limit (SMAC/SMAX)
    args: dict[str, Any] = field(default_factory=dict)  # backend-specific keyword args


@dataclass
class RolloutConfig:
    """On-policy collection (LICA_SPEC §6): B episodes per batch, one per parallel env."""

    batch_episodes: int = 32  # b: episodes per training batch = parallel training envs
    num_workers: int = 2  # W worker processes (each owns batch_episodes / W envs); 0 = in-process
    test_episodes: int = 32  # greedy episodes per evaluation
    test_num_workers: int = 0  # worker processes for the evaluation envs; 0 = in-process
    eval_interval: int = 20_000  # env steps between evaluations
    worker_timeout_s: float = 120.0  # a worker silent for this long is declared hung
    start_method: str = "spawn"  # multiprocessing start method for env workers


@dataclass
class AgentConfig:
    """Decentralised policy (LICA_SPEC §2)."""

    type: str = "rnn"  # rnn: Linear-ReLU-GRUCell-Linear | mlp: Linear-ReLU-Linear
    hidden_dim: int = 64
    shared: bool = True  # one network for all agents (SMAC) or one per agent (paper's MPE)
    obs_last_action: bool = True  # input ⊕ one-hot previous action
    obs_agent_id: bool = True  # input ⊕ one-hot agent id


@dataclass
class AlgoConfig:
    """LICA (and baselines) hyper-parameters; defaults are the reference SMAC values."""

    name: str = "lica"  # lica | coma
    gamma: float = 0.99
    td_lambda: float = 0.8  # 0 = one-step TD (the paper's MPE setting)
    actor_lr: float = 0.0025
    critic_lr: float = 0.0005
    grad_norm_clip: float = 10.0
    critic_updates: int = 1  # critic gradient steps per batch (same targets), before the actor step
    target_update_interval: int = 200  # critic gradient steps between hard target copies
    target_tau: float = 0.0  # > 0: soft (Polyak) target update by this fraction after every critic step
    bootstrap_on_timeout: bool = False  # reference: a time-out is stored as terminal
    critic_minibatch_episodes: int = 0  # > 0: each critic step on this many random episodes of its data
    critic_replay: int = 0  # earlier batches the critic also trains on (0: only the new one, on-policy)
    critic_target: str = "taken"  # bootstrap on Q̄(s, u) of the taken actions (reference) | expected: Q̄(s, π)
    critic_fast_path: bool = True  # taken one-hot actions through the exact grouped path (False: dense)
    critic: str = "mix"  # mix: C_Mix hypernetwork | mlp: C_MLP (Fig. A2)
    mixing_embed_dim: int = 64  # H
    hypernet_layers: int = 2  # hyper_w1 depth (1 or 2)
    hypernet_embed: Optional[int] = None  # E; None = H·n·|A| as in the reference code
    entropy: str = "adaptive"  # adaptive: -ξ·H/sg(H) (Eq. 6) | vanilla: -β·H (Eq. 5)
    entropy_coef: float = 0.06  # ξ
    beta: float = 0.15  # β (vanilla entropy only)
    entropy_eps: float = 1e-6  # floor on sg(H̄) in the adaptive term (logged when hit)
    actor_input: str = "probs"  # probs (Eq. 4) | gumbel (straight-through Gumbel-Softmax)
    gumbel_tau: float = 1.0
    agent: AgentConfig = field(default_factory=AgentConfig)

    @property
    def entropy_weight(self) -> float:
        """The entropy term's coefficient: ξ (``entropy_coef``) for the adaptive term of
        Eq. 6, β (``beta``) for the vanilla term of Eq. 5."""
        return self.entropy_coef if self.entropy == "adaptive" else self.beta


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
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    name: str = "lica"  # experiment name (W&B group, output folder suffix)
    ckpt_path: Optional[str] = None  # resume from this checkpoint
    resume: bool = False  # resume from the run folder's last checkpoint if there is one
    output_dir: Optional[str] = None  # None: Hydra's run folder


START_METHODS = tuple(multiprocessing.get_all_start_methods())  # multiprocessing start methods here
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
MAX_SEED = 2**32 - 1  # Lightning's seed_everything and numpy's legacy seeding stop here


def register_configs() -> None:
    """Register the schema so ``lica/conf/train.yaml`` can name it in its defaults list."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)


def validate(cfg: TrainConfig) -> None:
    """Reject settings that type-check but cannot work, naming the fix."""
    from lica.envs import BACKENDS  # lica.envs imports this module

    checks = [
        (cfg.rollout.batch_episodes >= 1, "rollout.batch_episodes must be >= 1 (the paper uses 32)"),
        (cfg.rollout.test_episodes >= 1, "rollout.test_episodes must be >= 1"),
        (cfg.rollout.num_workers >= 0, "rollout.num_workers must be >= 0 (0 = envs in-process)"),
        (cfg.rollout.eval_interval >= 1, "rollout.eval_interval must be >= 1 env step"),
        (cfg.trainer.max_env_steps >= 1, "trainer.max_env_steps must be >= 1"),
        (cfg.trainer.checkpoint_every_iters >= 1, "trainer.checkpoint_every_iters must be >= 1"),
        (0.0 <= cfg.algo.gamma <= 1.0, "algo.gamma must lie in [0, 1]"),
        (0.0 <= cfg.algo.td_lambda <= 1.0, "algo.td_lambda must lie in [0, 1] (0 = one-step TD)"),
        (cfg.algo.entropy_coef >= 0, "algo.entropy_coef (xi) must be >= 0"),
        (cfg.algo.beta >= 0, "algo.beta must be >= 0"),
        (cfg.algo.actor_lr > 0 and cfg.algo.critic_lr > 0, "algo.actor_lr and algo.critic_lr must be > 0"),
        (cfg.algo.grad_norm_clip > 0, "algo.grad_norm_clip must be > 0"),
        (cfg.algo.target_update_interval >= 1, "algo.target_update_interval must be >= 1"),
        (cfg.trainer.precision in ("32-true", "bf16-mixed"),
         f"trainer.precision must be '32-true' or 'bf16-mixed', got {cfg.trainer.precision!r}"),
        (cfg.algo.critic_target in ("taken", "expected"),
         f"algo.critic_target must be 'taken' or 'expected', got {cfg.algo.critic_target!r}"),
        (cfg.algo.critic_minibatch_episodes >= 0, "algo.critic_minibatch_episodes must be >= 0 (0 = all)"),
        (cfg.algo.critic_replay >= 0, "algo.critic_replay must be >= 0 (earlier batches for the critic)"),
        (cfg.algo.critic_updates >= 1, "algo.critic_updates must be >= 1 (critic steps per batch)"),
        (0.0 <= cfg.algo.target_tau <= 1.0, "algo.target_tau must lie in [0, 1] (0 = hard copies)"),
        (cfg.algo.gumbel_tau > 0, "algo.gumbel_tau must be > 0"),
        (cfg.algo.name in ("lica", "coma"), f"algo.name must be 'lica' or 'coma' (algo=lica, algo=coma), got {cfg.algo.name!r}"),
        (cfg.algo.critic in ("mix", "mlp"), f"algo.critic must be 'mix' or 'mlp', got {cfg.algo.critic!r}"),
        (cfg.algo.entropy in ("adaptive", "vanilla"),
         f"algo.entropy must be 'adaptive' or 'vanilla', got {cfg.algo.entropy!r}"),
        (cfg.algo.actor_input in ("probs", "gumbel"),
         f"algo.actor_input must be 'probs' or 'gumbel', got {cfg.algo.actor_input!r}"),
        (cfg.algo.agent.hidden_dim >= 1, "algo.agent.hidden_dim must be >= 1"),
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
        (cfg.env.backend in BACKENDS, f"env.backend must be one of {', '.join(BACKENDS)} (pick an env "
         f"with env=spread, env=smax_2s3z, env=smac_2s3z, ...), got {cfg.env.backend!r}"),
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
    if cfg.algo.name == "coma":
        checks += [
            (cfg.algo.critic == "mix", "algo=coma cannot take ablation=cmlp (algo.critic=mlp): COMA has its own "
             "critic Q(s, u^-a, .); use ablation=full, or ablation=vanilla_entropy with algo.beta > 0"),
            (cfg.algo.actor_input == "probs", "algo=coma cannot take ablation=gumbel (algo.actor_input=gumbel): COMA "
             "learns its actor by the counterfactual policy gradient and never feeds actions to a critic"),
        ]
    if cfg.trainer.accelerator in ("gpu", "cuda"):  # before Lightning's "No supported gpu backend found!"
        import torch

        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        checks.append((torch.cuda.is_available(),
                       f"trainer.accelerator={cfg.trainer.accelerator} but torch {torch.__version__} ({build}) "
                       "finds no CUDA GPU: run with trainer.accelerator=cpu, or on a GPU machine with a CUDA "
                       "build of torch"))
    problems = [msg for ok, msg in checks if not ok]
    if problems:
        raise ValueError("Invalid lica config:\n  - " + "\n  - ".join(problems))
