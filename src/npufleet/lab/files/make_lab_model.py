"""Write the lab's tiny model and datasets: run inside the training image, which has the libraries.

OUT/models/tiny-qwen2: a BPE tokenizer (512 tokens, ChatML template) and a random Qwen2 model
(hidden 128, 4 heads of 32, 2 layers; vLLM's CPU attention takes head sizes of 32 and more, and it
serves up to max_position_embeddings tokens) saved with save_pretrained;
OUT/datasets/lab: an alpaca-format SFT set, a preference set (chosen/rejected) for DPO and RM, and
dataset_info.json. Seeded: same files each run.
"""

import json
import random
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SFT_SAMPLES = 512
PREFERENCE_SAMPLES = 128
WORDS = [
    "the",
    "a",
    "npu",
    "node",
    "card",
    "train",
    "loss",
    "token",
    "model",
    "fleet",
    "serve",
    "image",
    "docker",
    "lab",
    "rank",
    "step",
    "batch",
    "data",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)


def sentence(length: int) -> str:
    return " ".join(random.choice(WORDS) for _ in range(length))


def main(out: Path) -> None:
    random.seed(0)
    torch.manual_seed(0)
    model_dir, data_dir = out / "models" / "tiny-qwen2", out / "datasets" / "lab"
    # The answer repeats the prompt's words, so a model can learn it: the loss falls, then flattens.
    sft = []
    for _ in range(SFT_SAMPLES):
        prompt = sentence(6)
        sft.append({"instruction": f"Repeat: {prompt}", "input": "", "output": f"{prompt} {sentence(4)}"})
    preference = [
        {"instruction": f"Repeat: {(p := sentence(5))}", "input": "", "chosen": p, "rejected": sentence(5)}
        for _ in range(PREFERENCE_SAMPLES)
    ]
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([s["instruction"] + " " + s["output"] for s in sft], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(model_dir)
    config = Qwen2Config(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(model_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "lab_sft.json").write_text(json.dumps(sft, indent=1))
    (data_dir / "lab_preference.json").write_text(json.dumps(preference, indent=1))
    info = {
        "lab_sft": {"file_name": "lab_sft.json"},
        "lab_preference": {
            "file_name": "lab_preference.json",
            "ranking": True,
            "columns": {
                "prompt": "instruction",
                "query": "input",
                "chosen": "chosen",
                "rejected": "rejected",
            },
        },
    }
    (data_dir / "dataset_info.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
