"""Write the lab's tiny vision-language model and a test image: run inside the inference image.

OUT/models/tiny-idefics3: a random Idefics3 (SmolVLM's architecture: a SigLIP-style vision tower of
one layer, 56-pixel images in 14-pixel patches, 4 image tokens per image, and a Llama text model of
hidden 128, 4 heads of 32, 2 layers) with a BPE tokenizer, its image processor and chat template.
Idefics3 is one vLLM's CPU build serves without torchvision: transformers falls back to its PIL
image processor (Qwen2-VL and LLaVA import torchvision in vLLM, which the image leaves out).
OUT/images/lab.png: a small picture for the manual's multimodal request. Seeded: same files each run.
"""

import random
import sys
from pathlib import Path

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    PreTrainedTokenizerFast,
)
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

WORDS = ["the", "a", "npu", "node", "card", "train", "loss", "token", "model", "fleet", "serve", "image",
         "lab", "what", "is", "in", "this", "picture"]  # fmt: skip
IMAGE_SIZE, PATCH, SCALE = 56, 14, 2
SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>",
    "<global-img>",
    *(f"<row_{row}_col_{col}>" for row in range(1, 5) for col in range(1, 5)),
]  # fmt: skip
# Images and text in one user turn, as the OpenAI chat API sends them (image_url parts become <image>).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or part['type'] == 'image_url' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<end_of_utterance>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def main(out: Path) -> None:
    random.seed(0)
    torch.manual_seed(0)
    model_dir = out / "models" / "tiny-idefics3"
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    sentences = [" ".join(random.choice(WORDS) for _ in range(8)) for _ in range(512)]
    tokenizer.train_from_iterator(sentences, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    edge = {"longest_edge": IMAGE_SIZE}
    images = Idefics3ImageProcessorPil(size=edge, max_image_size=edge, do_image_splitting=False)
    processor = Idefics3Processor(
        image_processor=images,
        tokenizer=fast,
        image_seq_len=(IMAGE_SIZE // PATCH) ** 2 // SCALE**2,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    ids = {token: fast.convert_tokens_to_ids(token) for token in SPECIAL}
    config = Idefics3Config(
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": PATCH},
        text_config={"model_type": "llama", "vocab_size": len(fast), "hidden_size": 128,
                     "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2,
                     "max_position_embeddings": 1024, "bos_token_id": ids["<|endoftext|>"],
                     "eos_token_id": ids["<end_of_utterance>"], "pad_token_id": ids["<|endoftext|>"],
                     "tie_word_embeddings": True},
        image_token_id=ids["<image>"],
        scale_factor=SCALE,
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=True,
    )  # fmt: skip
    model = Idefics3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<end_of_utterance>"]
    model.save_pretrained(model_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out / "images" / "lab.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
