"""Hero's models and batches: the frozen decoder and encoder, the latent prefix, LoRA, and
the forward passes every stage and eval share.

The decoder sees ``[M soft tokens] + anchor ("Answer:") + answer tokens < i`` and predicts
answer token i; the encoder reads ``"Context: ...\\nQuestion: ..."``. The text baseline and
the distillation teacher read the same context as plain text: ``"Context: ...\\nQuestion:
...\\nAnswer:"``. Answers are trained as ``" " + answer`` followed by the end-of-sequence
token, so a greedy answer stops by itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from expspec.kernels.errors import ExpspecError
from expspec.kernels.hero.latent import EncodedTexts, LatentPrefix, embedding_stats, encode_texts
from expspec.kernels.hero.losses import IGNORE
from expspec.kernels.hero.squad import SquadQuestion
from expspec.kernels.models.pretrained import load_causal_lm, load_sentence_encoder

ANCHOR = "Answer:"


def encoder_text(q: SquadQuestion) -> str:
    """The question first: a long (SQuAD) context is cut at the encoder's length, never the question."""
    return f"Question: {q.question}\nContext: {q.context}"


def text_prompt(q: SquadQuestion) -> str:
    return f"Context: {q.context}\nQuestion: {q.question}\n{ANCHOR}"


@dataclass
class HeroModels:
    decoder: Any  # the causal LM (LoRA is injected into it in place by ``add_lora``)
    tokenizer: Any
    encoder: Any
    encoder_tokenizer: Any
    device: torch.device
    autocast_dtype: torch.dtype | None  # bf16 autocast on CUDA, None = plain fp32
    lora: Any = None  # the peft wrapper once Stage B added LoRA

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def teacher(self):
        """The decoder as the distillation teacher and text baseline: LoRA off, if any."""
        return self.lora.disable_adapter() if self.lora is not None else contextlib.nullcontext()


def load_models(cfg: Mapping[str, Any], device: str) -> HeroModels:
    dev = torch.device(device)
    dtype = cfg["dtype"]
    if dtype == "bf16" or (dtype == "auto" and dev.type == "cuda"):
        autocast = torch.bfloat16
    else:
        autocast = None
    # fp32 weights unless autocast runs (a bf16 checkpoint would meet an fp32 prefix)
    decoder, tok = load_causal_lm(cfg["decoder_model"], device=str(dev), dtype=None if autocast else torch.float32)
    encoder, enc_tok = load_sentence_encoder(cfg["encoder_model"], device=str(dev))
    for model in (decoder, encoder):
        model.requires_grad_(False)
        model.eval()
    tok.padding_side = "left"
    return HeroModels(decoder, tok, encoder, enc_tok, dev, autocast)


def build_latent(models: HeroModels, cfg: Mapping[str, Any], seed: int) -> LatentPrefix:
    torch.manual_seed(seed)
    mean, std = embedding_stats(models.decoder.get_input_embeddings().weight)
    latent = LatentPrefix(models.encoder.config.hidden_size, models.decoder.config.hidden_size,
                          cfg["latent_len"], cfg["d_z"], mean, std)
    return latent.to(models.device)


def add_lora(models: HeroModels, cfg: Mapping[str, Any]) -> list[torch.nn.Parameter]:
    """Inject LoRA (peft) into the decoder's attention; returns its trainable parameters."""
    from peft import LoraConfig, get_peft_model

    if models.lora is not None:
        raise ExpspecError("hero: LoRA already added to this decoder")
    n_layers = models.decoder.config.num_hidden_layers
    layers = list(range(min(cfg["lora_layers"], n_layers))) if cfg["lora_layers"] else None
    config = LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                        target_modules=list(cfg["lora_target_modules"]), layers_to_transform=layers,
                        bias="none", task_type="CAUSAL_LM")
    try:
        models.lora = get_peft_model(models.decoder, config)
    except ValueError as exc:
        raise ExpspecError(f"hero.lora_target_modules {cfg['lora_target_modules']}: {exc}") from None
    return [p for n, p in models.lora.named_parameters() if "lora_" in n and p.requires_grad]


@dataclass
class QAData:
    """A split ready for the decoder: questions, encoder states, answer token ids (+ EOS)."""

    questions: list[SquadQuestion]
    encoded: EncodedTexts
    answer_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.questions)


def prepare(models: HeroModels, questions: Sequence[SquadQuestion]) -> QAData:
    if not questions:
        raise ExpspecError("hero: no questions to prepare")
    encoded = encode_texts(models.encoder, models.encoder_tokenizer, [encoder_text(q) for q in questions])
    answers = [models.tokenizer.encode(" " + q.answers[0], add_special_tokens=False) + [models.eos_id]
               for q in questions]
    return QAData(list(questions), encoded, answers)


def targets_for(data: QAData, index: Sequence[int], k: int) -> torch.Tensor:
    """[B, K] gold answer tokens (answer + EOS), IGNORE past each answer's end."""
    out = torch.full((len(index), k), IGNORE, dtype=torch.long)
    for row, i in enumerate(index):
        ids = data.answer_ids[i][:k]
        out[row, :len(ids)] = torch.tensor(ids)
    return out


def _anchor_embeds(models: HeroModels, batch: int) -> torch.Tensor:
    ids = models.tokenizer.encode(ANCHOR, add_special_tokens=False)
    emb = models.decoder.get_input_embeddings()(torch.tensor(ids, device=models.device))
    return emb.unsqueeze(0).expand(batch, -1, -1)


def _lead_embeds(models: HeroModels, batch: int) -> torch.Tensor:
    """[B, 1, H]: a real token in front of the soft ones (BOS, else EOS). A causal LM's first
    position is its attention sink; a soft token there made the smoke run's gradient norms
    spike past 1000, with a real token in front they stay near 50."""
    lead = models.tokenizer.bos_token_id if models.tokenizer.bos_token_id is not None else models.eos_id
    emb = models.decoder.get_input_embeddings()(torch.tensor([lead], device=models.device))
    return emb.unsqueeze(0).expand(batch, -1, -1)


def prefix_embeds(models: HeroModels, latent: LatentPrefix, data: QAData, index: Sequence[int]) -> torch.Tensor:
    """[B, 1 + M + anchor, H]: a real lead token, the soft tokens, then the anchor's embeddings."""
    states, mask = data.encoded.take(index, models.device)
    soft = latent(states, mask)
    return torch.cat([_lead_embeds(models, len(index)).to(soft.dtype), soft,
                      _anchor_embeds(models, len(index)).to(soft.dtype)], dim=1)


def answer_logits(models: HeroModels, prefix: torch.Tensor, answer_inputs: torch.Tensor) -> torch.Tensor:
    """[B, K, V] logits predicting answer tokens 0..K-1 from prefix + answer_inputs [B, K-1].

    Only K positions go through the output head (its vocabulary is most of the cost). The
    K rows are made contiguous first: a strided [B, K, H] slice sends the head's matmul down
    a batched path, which on CPU cost more than the full-width head it avoids (bench_hero)."""
    pad = answer_inputs.clamp_min(0)  # IGNORE-padded inputs read as token 0; their targets are ignored
    embeds = torch.cat([prefix, models.decoder.get_input_embeddings()(pad.to(models.device)).to(prefix.dtype)], 1)
    start = prefix.shape[1] - 1
    with models.autocast():
        hidden = models.decoder.get_decoder()(inputs_embeds=embeds).last_hidden_state
        k = answer_inputs.shape[1] + 1
        return models.decoder.get_output_embeddings()(hidden[:, start:start + k].contiguous()).float()


def teacher_logits(models: HeroModels, data: QAData, index: Sequence[int], targets: torch.Tensor) -> torch.Tensor:
    """[B, K, V]: the decoder (LoRA off) reading the text prompt, teacher-forced on the gold."""
    prompts = [models.tokenizer.encode(text_prompt(data.questions[i])) for i in index]
    k = targets.shape[1]
    gold_in = targets[:, :k - 1].clamp_min(0).tolist()
    rows = [p + g for p, g in zip(prompts, gold_in)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), models.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):  # left padding: every row's answer positions line up at the end
        ids[r, width - len(row):] = torch.tensor(row)
        mask[r, width - len(row):] = 1
    with torch.no_grad(), models.teacher(), models.autocast():
        out = models.decoder.get_decoder()(input_ids=ids.to(models.device), attention_mask=mask.to(models.device))
        hidden = out.last_hidden_state[:, width - k:].contiguous()  # as in answer_logits
        return models.decoder.get_output_embeddings()(hidden).float()


@torch.no_grad()
def generate_latent(models: HeroModels, latent: LatentPrefix, data: QAData, index: Sequence[int],
                    max_new_tokens: int, batch_size: int = 64) -> list[list[int]]:
    """Greedy answer token ids after the latent prefix (EOS and padding dropped)."""
    out: list[list[int]] = []
    for start in range(0, len(index), batch_size):
        chunk = list(index[start:start + batch_size])
        embeds = prefix_embeds(models, latent, data, chunk)
        with models.autocast():
            gen = models.decoder.generate(inputs_embeds=embeds, attention_mask=torch.ones(
                embeds.shape[:2], dtype=torch.long, device=models.device), max_new_tokens=max_new_tokens,
                do_sample=False, eos_token_id=models.eos_id, pad_token_id=models.tokenizer.pad_token_id)
        out.extend(_strip(row, models.eos_id) for row in gen.tolist())  # embeds in: new tokens out
    return out


@torch.no_grad()
def generate_text(models: HeroModels, data: QAData, index: Sequence[int], max_new_tokens: int,
                  batch_size: int = 32) -> list[list[int]]:
    """Greedy answer token ids of the decoder (LoRA off) reading the text prompt."""
    out: list[list[int]] = []
    for start in range(0, len(index), batch_size):
        chunk = [text_prompt(data.questions[i]) for i in index[start:start + batch_size]]
        batch = models.tokenizer(chunk, return_tensors="pt", padding=True).to(models.device)
        with models.teacher(), models.autocast():
            gen = models.decoder.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                          eos_token_id=models.eos_id, pad_token_id=models.tokenizer.pad_token_id)
        out.extend(_strip(row, models.eos_id) for row in gen[:, batch["input_ids"].shape[1]:].tolist())
    return out


def _strip(ids: list[int], eos: int) -> list[int]:
    return ids[:ids.index(eos)] if eos in ids else ids


def answer_text(models: HeroModels, ids: Sequence[int]) -> str:
    """A generated answer as text: decoded, cut at the first line break, stripped."""
    return models.tokenizer.decode(list(ids), skip_special_tokens=True).split("\n")[0].strip()
