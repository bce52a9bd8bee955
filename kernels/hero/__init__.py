"""Hero readiness: is a latent-prefix QA run ready for its hero (GPU, hours) budget?

The question: a sentence encoder turns a context into a few soft tokens (a latent prefix)
in front of a frozen decoder (SmolLM2-135M-Instruct at smoke), trained in Stage A
(encoder + adapter) and Stage B (+ LoRA on the decoder's attention), answers questions
about that context. Before spending the hero budget, does a small run show it *learning
from the prefix* - first-token accuracy that rises and stays up, F1 above the answer
priors, no gradient blow-ups or "thethethe" collapse? Seed: the hero-readiness issue
(its smoke values, hero sizes and checklist), fixing the original code's metric (set
overlap against the first gold only) with the official SQuAD v1.1 EM/F1.

Read top-down: ``config`` (the knobs), ``qa_data`` (the generated extractive QA set),
``squad`` (EM/F1 and the eval aggregates), ``schedules`` (scheduled sampling,
first-token weight, LR), ``diagnostics`` (the per-step and per-epoch logs and their
analysis) and ``cli`` (``expspec qa score``, ``expspec hero data|analyze|monitor``).
The training builds on these: ``latent`` and ``model`` (prefix, decoder, LoRA), ``stages``
(Stage A/B, eval), ``checkpoints`` (loading one, a user's ``resume_from`` included), ``ddp``
and ``launch`` (a stage under torchrun), ``checklist`` and ``ladder`` (the plan's phase
ladder); ``availability`` says whether hero's HF model and dataset can be had here.
"""
