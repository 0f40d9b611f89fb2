"""The clips msclap's reference scores are made for (tests/reference/msclap_scores.py) and
tests/unit/test_msclap.py compares with: a modulated 220 Hz tone in noise at 44.1 kHz, 1.3 s and
the whole window. NumPy only: both environments import it."""

import numpy as np

RATE = 44100


def clips(duration: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(int(duration * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    full = (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    return {"short": full[: int(1.3 * RATE)], "window": full}
