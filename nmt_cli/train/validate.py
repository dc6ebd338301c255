"""Validation: loss and perplexity under teacher forcing, BLEU and chrF of greedy output.

BLEU and chrF are sacreBLEU's, on detokenized text against the raw references, as the
field reports them; so validation BLEU is comparable with `nmt score` on the same split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sacrebleu
import torch

from nmt_cli.model.loss import perplexity
from nmt_cli.model.shapes import STEP_ROWS
from nmt_cli.search.greedy import greedy_encoded
from nmt_cli.train.run import Run


@torch.no_grad()
def validate(run: Run) -> dict[str, Any]:
    """Scores of the model on the validation split, and its greedy hypotheses."""
    model, data, cfg = run.model, run.data.valid, run.cfg.train
    was_training = model.training
    model.eval()
    order = np.argsort(data.src_len, kind="stable")
    hyps = [""] * len(data)
    nll = tokens = 0.0
    for start in range(0, len(order), cfg.valid_batch_size):
        indices = order[start : start + cfg.valid_batch_size]
        batch = data.collate(indices).to(run.device)
        with run.autocast():
            encoded = model.encode(batch.src, batch.src_lengths)  # once, for the loss and for decoding
            nll += model.decoder.losses(model.decoder(batch.tgt_in, *encoded), batch.tgt_out, 0.0)[1].item()
            # rows rounded as training's batches are: its product kernels serve validation too (shapes.py)
            hyps_batch = greedy_encoded(
                model,
                encoded,
                batch.src_lengths,
                cfg.valid_max_len_a,
                cfg.valid_max_len_b,
                logprobs=False,
                row_multiple=max(STEP_ROWS, cfg.batch_multiple),
            )
        tokens += batch.tokens
        for i, hyp in zip(indices, hyps_batch):
            hyps[i] = run.data.tgt_spm.decode(hyp.tokens)
    model.train(was_training)
    loss = nll / max(1.0, tokens)
    return {
        "loss": loss,
        "ppl": perplexity(nll, tokens),
        "bleu": sacrebleu.corpus_bleu(hyps, [run.data.valid_refs]).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [run.data.valid_refs]).score,
        "hypotheses": hyps,
    }
