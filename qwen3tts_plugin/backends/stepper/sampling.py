"""Each row's next code, chosen for all rows of a step at once, with transformers' own logits
processors in the order its ``generate`` applies them for qwen_tts's talker and predictor.

The talker: repetition penalty over the row's first-codebook codes, end of speech forbidden for
the first ``MIN_NEW_TOKENS`` codes, the top 1,024 codec ids but EOS suppressed; then, when
sampling, temperature, top-k and top-p. The code predictor: the warpers only. Each row has its
own values and, when seeded, its own ``torch.Generator``, drawn in the order qwen_tts draws
for a text alone (one talker code, then the 15 predictor codes, per frame), so a seeded row
gives the same codes alone, in any batch, or admitted into a running one.

Rows that share values are processed as one tensor (the processors work row by row, so the
result is each row's own); only a seeded row's draw is made alone, with its generator.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

MIN_NEW_TOKENS = 2
"""qwen_tts's ``min_new_tokens`` for the talker: no end of speech before two codes."""
SUPPRESSED_TAIL = 1024
"""qwen_tts suppresses the top 1,024 ids of the talker's codec vocabulary (except EOS)."""


@dataclass(frozen=True)
class Sampling:
    """One stage's sampling values, as qwen_tts passes them to ``generate``."""

    do_sample: bool
    temperature: float
    top_k: int
    top_p: float


@functools.lru_cache(maxsize=256)
def warpers(sampling: Sampling) -> LogitsProcessorList:
    """transformers' warpers for these values, in its order (none when greedy)."""
    found: list = []
    if sampling.do_sample:
        if sampling.temperature is not None and sampling.temperature != 1.0:
            found.append(TemperatureLogitsWarper(sampling.temperature))
        if sampling.top_k is not None and sampling.top_k != 0:
            found.append(TopKLogitsWarper(top_k=sampling.top_k, min_tokens_to_keep=1))
        if sampling.top_p is not None and sampling.top_p < 1.0:
            found.append(TopPLogitsWarper(top_p=sampling.top_p, min_tokens_to_keep=1))
    return LogitsProcessorList(found)


@dataclass(frozen=True, eq=False)
class RowSampler:
    """How one row chooses: its talker and predictor values, its penalty, its generator."""

    talker: Sampling
    predictor: Sampling
    repetition_penalty: float | None
    generator: torch.Generator | None = None

    @classmethod
    def seeded(
        cls,
        talker: Sampling,
        predictor: Sampling,
        repetition_penalty: float | None,
        seed: int | None,
        device: torch.device,
    ) -> RowSampler:
        generator = None
        if seed is not None:
            generator = torch.Generator(device=device)
            generator.manual_seed(seed)
        return cls(talker, predictor, repetition_penalty, generator)


class TalkerRules:
    """What qwen_tts's talker generate applies before sampling: EOS and the suppressed ids."""

    def __init__(self, eos_id: int, vocab_size: int, device: torch.device) -> None:
        self.eos_id = eos_id
        suppressed = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        suppressed[vocab_size - SUPPRESSED_TAIL :] = True
        suppressed[eos_id] = False
        self.suppressed = suppressed

    def choose(
        self, samplers: Sequence[RowSampler], histories: Sequence[list[int]], logits: torch.Tensor
    ) -> list[int]:
        """Each row's next first-codebook code from the talker's ``logits`` [n, V] (float32)
        after its ``histories`` (its codes so far)."""
        scores = logits.clone()
        by_penalty: dict[float, list[int]] = defaultdict(list)
        for index, (sampler, history) in enumerate(zip(samplers, histories, strict=True)):
            penalty = sampler.repetition_penalty
            if history and penalty is not None and penalty != 1.0:
                by_penalty[penalty].append(index)
        for penalty, rows in by_penalty.items():
            width = max(len(histories[i]) for i in rows)
            # a row's history padded with its own first code: penalised once all the same
            padded = [histories[i] + [histories[i][0]] * (width - len(histories[i])) for i in rows]
            ids = torch.tensor(padded, dtype=torch.long, device=scores.device)
            processor = RepetitionPenaltyLogitsProcessor(penalty=penalty)
            scores[rows] = processor(ids, scores[rows])
        early = [i for i, history in enumerate(histories) if len(history) < MIN_NEW_TOKENS]
        if early:
            scores[early, self.eos_id] = -float("inf")
        scores = torch.where(self.suppressed, -float("inf"), scores)
        return choose(samplers, scores, talker=True).tolist()


def choose(samplers: Sequence[RowSampler], scores: torch.Tensor, talker: bool) -> torch.Tensor:
    """Each row's code [n] from ``scores`` [n, V]: its stage's warpers, then argmax or a draw
    (from the row's generator when it has one)."""
    chosen = torch.empty(scores.shape[0], dtype=torch.long, device=scores.device)
    groups: dict[Sampling, list[int]] = defaultdict(list)
    for index, sampler in enumerate(samplers):
        groups[sampler.talker if talker else sampler.predictor].append(index)
    none = torch.empty((len(samplers), 0), dtype=torch.long, device=scores.device)
    for sampling, rows in groups.items():
        # every row in one group (the usual case) is a slice: indexing with a list copies the
        # indices to the device, which on a GPU waits for the queued work, 15 times a frame
        pick = slice(None) if len(rows) == len(samplers) else rows
        warped = warpers(sampling)(none[pick], scores[pick])
        if not sampling.do_sample:
            chosen[pick] = torch.argmax(warped, dim=-1)
            continue
        probs = torch.nn.functional.softmax(warped, dim=-1)
        plain = [k for k, row in enumerate(rows) if samplers[row].generator is None]
        if len(plain) == len(samplers):
            chosen[:] = torch.multinomial(probs, num_samples=1).squeeze(1)
        elif plain:
            draws = torch.multinomial(probs[plain], num_samples=1).squeeze(1)
            chosen[[rows[k] for k in plain]] = draws
        for k, row in enumerate(rows):
            generator = samplers[row].generator
            if generator is not None:
                draw = torch.multinomial(probs[k : k + 1], num_samples=1, generator=generator)
                chosen[row] = draw[0, 0]
    return chosen
