"""A stand-in for nanochat's base_train that prints a nanochat-format (2026 vintage) log.

Its batch (1,048,576 tokens) and its parameter counts are its own - deliberately unlike
expspec's built-in model - so a test can tell whether Lane B counts D and N from the
log (right) or from its own config (wrong). val_bpb follows 0.8 + 30 D^-0.2 in the
tokens D it has seen, plus a small seed-dependent offset.
"""

import argparse

BATCH = 1_048_576

parser = argparse.ArgumentParser()
parser.add_argument("--depth", type=int, required=True)
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--num-iterations", type=int, default=-1)
parser.add_argument("--target-param-data-ratio", type=float, default=10.5)
parser.add_argument("--no-batch-line", action="store_true")
args = parser.parse_args()

dim = 64 * args.depth
matrices, lm_head, wte = 12 * args.depth * dim * dim, 32768 * dim, 32768 * dim
n_scaling = matrices + lm_head
iters = args.num_iterations if args.num_iterations > 0 else max(1, int(args.target_param_data_ratio * n_scaling / BATCH))
print("Vocab size: 32,768")
print("Parameter counts:")
print(f"wte                     : {wte:,}")
print(f"lm_head                 : {lm_head:,}")
print(f"transformer_matrices    : {matrices:,}")
print(f"total                   : {matrices + lm_head + wte:,}")
print(f"Calculated number of iterations from target data:param ratio: {iters}")
if not args.no_batch_line:
    print(f"Total batch size {BATCH:,} => gradient accumulation steps: 2")


def bpb(step: int) -> float:
    return 0.8 + 30.0 * max(step * BATCH, BATCH / 4) ** -0.2 + 0.002 * (args.seed % 3)


for step in range(iters + 1):
    if step % 10 == 0 or step == iters:
        print(f"Step {step:05d} | Validation bpb: {bpb(step):.6f}")
    if step == iters:
        break
    print(f"step {step:05d}/{iters:05d} ({100 * step / iters:.2f}%) | loss: {3.0 - step * 0.001:.6f} | lrm: 1.00 "
          f"| dt: 1000.00ms | tok/sec: {BATCH:,} | bf16_mfu: 30.00 | epoch: 1 pq: 0 rg: {step} "
          f"| total time: {(step + 1) / 60:.2f}m")
print(f"Total training time: {iters / 60:.2f}m")
print(f"Minimum validation bpb: {bpb(iters):.6f}")
