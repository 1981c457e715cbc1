"""Animations of evaluation episodes (``python -m lica.evaluate ... render=N``).

:class:`RecordingEnv` wraps one environment that can describe its state as a picture
(``render_frame()``: every entity's position, radius and colour; the mpe2 tasks in
:mod:`lica.envs.mpe`) and keeps a frame after the reset and after every step.
:func:`write_gif` draws the frames with matplotlib (no display needed) and writes one GIF
with Pillow, episode after episode, each frame titled with the episode, the step and
the return so far.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lica.envs.base import EnvInfo, MultiAgentEnv, Observation


@dataclass
class Frame:
    t: int  # env steps taken in the episode
    ret: float  # return so far
    scene: dict[str, np.ndarray]  # the env's render_frame(): pos (E, 2), size (E,), color (E, 3), learner (E,)


class RecordingEnv(MultiAgentEnv):
    """Passes everything through to ``env`` and records the episode's frames."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.frames: list[Frame] = []

    def get_env_info(self) -> EnvInfo:
        return self.env.get_env_info()

    def reset(self, seed: int | None = None) -> Observation:
        ob = self.env.reset(seed=seed)
        self.frames = [Frame(0, 0.0, self.env.render_frame())]
        return ob

    def step(self, actions: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        ob, reward, terminated, truncated, info = self.env.step(actions)
        last = self.frames[-1]
        self.frames.append(Frame(last.t + 1, last.ret + float(reward), self.env.render_frame()))
        return ob, reward, terminated, truncated, info

    def close(self) -> None:
        self.env.close()


def write_gif(episodes: list[list[Frame]], path: Path, title: str = "", fps: int = 8, size_px: int = 240) -> Path:
    """One GIF of ``episodes`` (lists of frames), drawn on a fixed square view that holds
    every entity of every frame; the last frame of each episode is held for a second."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle
    from PIL import Image

    pos = np.concatenate([f.scene["pos"] for ep in episodes for f in ep])
    centre = (pos.max(0) + pos.min(0)) / 2
    half = float((pos.max(0) - pos.min(0)).max()) / 2 + 0.2
    dpi = 80
    fig = Figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 0.9))
    images: list[Image.Image] = []
    durations: list[int] = []
    for e, episode in enumerate(episodes):
        for i, frame in enumerate(episode):
            ax.clear()
            ax.set_xlim(centre[0] - half, centre[0] + half)
            ax.set_ylim(centre[1] - half, centre[1] + half)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            s = frame.scene
            for j in np.argsort(s["learner"], kind="stable"):  # landmarks first, agents on top
                ax.add_patch(Circle(tuple(s["pos"][j]), float(s["size"][j]), color=tuple(s["color"][j]),
                                    alpha=0.9 if s["learner"][j] else 0.6, ec="black" if s["learner"][j] else "none"))
            fig.suptitle(f"{title}\nepisode {e + 1}, t={frame.t}, return {frame.ret:.1f}", fontsize=7)
            canvas.draw()
            images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB"))
            durations.append(1000 if i == len(episode) - 1 else int(1000 / fps))
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=True)
    return path
