"""Parameter counting as nanochat does it, for the param:data ratio of scaling laws."""

from __future__ import annotations


def scaling_params(model) -> dict:
    """nanochat's parameter groups; ``total`` = transformer matrices + lm_head.

    Token (and position) embeddings are lookups, and norms/biases/scalar gains are
    vectors: nanochat leaves both out of the count its scaling laws use.
    """
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
