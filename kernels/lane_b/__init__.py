"""Lane B: infer a training token budget from corpus statistics.

The question (arXiv 2602.07488, Cagnetta, Raventos, Ganguli, Wyart): do a corpus's
own statistics predict its data-scaling exponent well enough to pick a param:data
ratio before spending GPU time? alpha = gamma / (2 beta), with beta the decay of the
token-token correlation norm with lag and gamma the decay of the conditional entropy
with context length. Seed: the Lane B worksheet and run guide (steps 0-8).

Read top-down: ``config`` (the knobs), ``correlation`` and ``entropy`` (beta, gamma),
``scaling`` (alpha, calibration, solving the target), ``stats`` (worksheet steps 1-4),
``pipeline`` (run guide steps 0-6), ``summary`` (steps 7-8), ``schema`` (the fixed
21-column CSV), ``plots`` and ``cli``.
"""
