"""Parameter counting as nanochat does it, for the param:data ratio of scaling laws."""

from __future__ import annotations


def nanochat_scaling_params(depth: int, model_dim: int, vocab_size: int) -> int:
    """The closed form of nanochat's count for its GPT (n_kv_head = n_head):

        N = depth x (4 d^2 attention [q, k, v, proj] + 8 d^2 relu^2 MLP [d->4d, 4d->d]) + V d (lm_head)
          = 12 depth d^2 + V d
    """
    return 12 * depth * model_dim ** 2 + vocab_size * model_dim


def scaling_params(model) -> dict:
    """nanochat's parameter groups; ``total`` = transformer matrices + lm_head.

    nanochat's base_train sizes its data as ``target_param_data_ratio x (transformer_matrices
    + lm_head)`` (``get_scaling_params``; "cleanest scaling laws"): every parameter of the
    transformer blocks plus the unembedding, leaving out the token embedding (a lookup)
    and scalars. For the built-in nanochat GPT that is ``nanochat_scaling_params``:
    12 depth d^2 + V d. The built-in GPT reports nanochat's groups itself
    (``num_scaling_params``); any other model (the Llama ``tiny_gpt``, an HF model) is
    split the same way by shape: the output embedding is ``lm_head``, input/position
    embeddings are excluded, the remaining >= 2-D tensors are ``transformer_matrices``
    and vectors (norm gains, biases) are excluded.
    """
    if hasattr(model, "num_scaling_params"):  # the built-in nanochat GPT
        counts = model.num_scaling_params()
        groups = {"transformer_matrices": counts["transformer_matrices"], "lm_head": counts["lm_head"],
                  "excluded_embeddings": counts["wte"], "excluded_vectors": counts["scalars"]}
        groups["all_params"] = sum(groups.values())
        groups["total"] = groups["transformer_matrices"] + groups["lm_head"]
        return groups
    head = model.get_output_embeddings().weight
    embedding_ids = {id(m.weight) for m in model.modules()
                     if type(m).__name__.endswith("Embedding") and hasattr(m, "weight")}
    groups = {"transformer_matrices": 0, "lm_head": 0, "excluded_embeddings": 0, "excluded_vectors": 0}
    for _, p in model.named_parameters():  # shared (tied) tensors are listed once
        if p is head:
            groups["lm_head"] += p.numel()
        elif id(p) in embedding_ids:
            groups["excluded_embeddings"] += p.numel()
        elif p.dim() >= 2:
            groups["transformer_matrices"] += p.numel()
        else:
            groups["excluded_vectors"] += p.numel()
    groups["all_params"] = sum(groups.values())
    groups["total"] = groups["transformer_matrices"] + groups["lm_head"]
    return groups
