"""TempNorm: does the hidden state at a starting point predict the tempnorm of what follows?

For a completion x sampled from p at temperature 1, prod_t p_t^(alpha - 1) is the
importance weight from p to the power distribution p^alpha (alpha = 4 as in power
sampling, Karan & Du 2025); its mean over completions estimates the future-likelihood
factor that low-temperature sampling drops. Phase 1 samples starting points and
gen_number completions from each, recording the start's hidden state and every token's
probability; phase 2 fits one ridge per eval length L from the hidden state to log
tempnorm and reports it against a predict-the-mean baseline and the between-start-point
ceiling. Seed: the "Predicting TempNorm Experiment" README (issue 12).

Read top-down: ``config`` (the knobs), ``contexts`` (the inputs), ``tempnorms`` (the
log-space statistics), ``records`` (the data file's schema and reader), ``generate``
(phase 1 on the shared sampler), ``rescore`` (the teacher-forced check of the recorded
probabilities), ``predictor`` (phase 2), ``plots`` and ``cli``. ``generate_data`` and
``train_data`` are the two steps the CLI and the pytest fixtures both run.
"""
