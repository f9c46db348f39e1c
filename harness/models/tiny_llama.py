"""A tiny random-weight Llama in Hugging Face format, built locally for tests and checks.

No model hub is needed: a byte-level BPE tokenizer is trained here on seeded English-like
text (`tokenizers`), a chat template is attached, and a Llama with random weights of a
small shape (`transformers`) is saved beside it as safetensors. vLLM, transformers and
the harness load the directory like any downloaded model. Its output is meaningless;
its speed exercises the engine's scheduling, batching and HTTP paths, not its kernels.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from harness.errors import UserError
from harness.models.words import WORDS  # the words prompts are synthesized from

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

SHAPE = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
         "max_position_embeddings": 4096}
# Big enough that a decode step is compute, not per-token overhead, on a small CPU: with
# SHAPE (2M parameters) one stream already runs at the serving stack's overhead limit, so
# concurrency shows no batching gain; this one (about 120M parameters) shows it.
BATCHING_SHAPE = {**SHAPE, "hidden_size": 1024, "intermediate_size": 4096,
                  "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 4}
VOCAB_SIZE = 2048
MARKER = "harness_tiny_llama.json"


def _corpus(seed: int, lines: int = 4000) -> list[str]:

    rng = random.Random(seed)
    text = []
    for i in range(lines):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 24))]
        text.append(f"[{i} {rng.getrandbits(40):010x}] " + " ".join(words) + ".")
    return text


def build_tiny_llama(out_dir: Path | str, seed: int = 0, dtype: str = "bfloat16",
                     shape: dict | None = None) -> Path:
    """Build the model into `out_dir` (reused when already built with the same seed)."""
    out = Path(out_dir)
    marker = out / MARKER
    shape = shape or SHAPE
    want = {"seed": seed, "dtype": dtype, "shape": shape, "vocab": VOCAB_SIZE, "version": 2}
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == want:
                return out
        except ValueError:
            pass
    try:
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
        from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    except ImportError as exc:
        raise UserError(f"building the tiny test model needs transformers, tokenizers and "
                        f"torch ({exc}); install the vLLM venv: make install-vllm") from None
    out.mkdir(parents=True, exist_ok=True)
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(seed), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   model_max_length=shape["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), bos_token_id=bos,
                         eos_token_id=tok.token_to_id("</s>"),
                         pad_token_id=tok.token_to_id("<pad>"), tie_word_embeddings=False,
                         torch_dtype=dtype, **shape)
    model = LlamaForCausalLM(config)
    # Random weights pick any token; tokens whose text is empty (special tokens) or an
    # incomplete UTF-8 byte would make streamed chunks with no text, which clients count
    # differently (see README, vLLM). A zero output row gives such a token logit 0, below
    # the maximum of ~2000 random logits, so greedy decoding never picks it.
    silent = [i for i in range(tok.get_vocab_size())
              if not (text := fast.decode([i])) or "\ufffd" in text]
    with torch.no_grad():
        model.lm_head.weight[silent] = 0.0
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    marker.write_text(json.dumps(want))
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m harness.models.tiny_llama [DIR]: build the model, print its folder."""
    args = sys.argv[1:] if argv is None else argv
    print(build_tiny_llama(args[0] if args else ".models/tiny-llama"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
