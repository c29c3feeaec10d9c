"""Make the lab's tiny CogVideoX and its video dataset, with no model hub (run in the CogVideoX image).

Writes, under the folder given as the only argument:
* models/tiny-cogvideox: a random-weight CogVideoX in diffusers' layout (model_index.json,
  transformer, vae, text_encoder, tokenizer, scheduler), shaped like CogVideoX1.5 (rotary position
  embeddings, temporal patches of 2) but a few hundred kilobytes: one layer, latent channels 4;
* datasets/tiny-videos: the layout of the manual's Tom-and-Jerry dataset (videos/*.mp4,
  captions.txt and videos.txt, one line per video), 5 frames of 32x32 at 8 fps each.

Seeded: the same files each run.
"""

import sys
from pathlib import Path

import numpy as np
import sentencepiece
import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)
from diffusers.utils import export_to_video
from transformers import T5Config, T5EncoderModel, T5Tokenizer

SEED = 1234
FRAMES = 5  # 4k+1 frames: the VAE makes 2 latent frames of them, a whole temporal patch
SIZE = 32  # pixels: 4x4 latents (the VAE divides by 8)
TEXT_DIM = 32
TEXT_LENGTH = 16
CAPTIONS = [
    "a grey cat chases a brown mouse across a kitchen floor",
    "a mouse hides behind a red pillow while the cat sleeps",
    "the cat slips on a banana and the mouse laughs",
    "a dog barks at the cat near a wooden fence",
]


def tokenizer(folder: Path, work: Path) -> T5Tokenizer:
    """A small sentencepiece model trained on the captions, wrapped as T5's tokenizer."""
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(CAPTIONS * 8) + "\n", encoding="utf-8")
    prefix = work / "spiece"
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=40,
        hard_vocab_limit=False,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    t5 = T5Tokenizer(vocab_file=str(prefix) + ".model", extra_ids=0, legacy=True)
    t5.save_pretrained(folder)
    return t5


def model(folder: Path, work: Path) -> None:
    torch.manual_seed(SEED)
    work.mkdir(parents=True, exist_ok=True)
    t5_tokenizer = tokenizer(work / "tokenizer", work)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=TEXT_DIM,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=4,
        time_embed_dim=8,
        text_embed_dim=TEXT_DIM,
        num_layers=1,
        sample_width=SIZE // 8,
        sample_height=SIZE // 8,
        sample_frames=FRAMES,
        patch_size=2,
        patch_size_t=2,
        temporal_compression_ratio=4,
        max_text_seq_length=TEXT_LENGTH,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        sample_height=SIZE,
        sample_width=SIZE,
    )
    pipeline = CogVideoXPipeline(
        tokenizer=t5_tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDDIMScheduler(),
    )
    pipeline.save_pretrained(folder)


def videos(folder: Path) -> None:
    """Moving coloured squares, one clip per caption."""
    rng = np.random.default_rng(SEED)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(len(CAPTIONS)):
        colour = rng.uniform(0.2, 1.0, size=3)
        frames = []
        for frame in range(FRAMES):
            image = np.full((SIZE, SIZE, 3), 0.1, dtype=np.float32)
            left = 4 + 4 * frame
            image[8:20, left : left + 12] = colour
            frames.append(image)
        name = f"videos/clip{index}.mp4"
        export_to_video(frames, str(folder / name), fps=8)
        names.append(name)
    (folder / "captions.txt").write_text("\n".join(CAPTIONS) + "\n", encoding="utf-8")
    (folder / "videos.txt").write_text("\n".join(names) + "\n", encoding="utf-8")


def main(out: Path) -> None:
    model(out / "models" / "tiny-cogvideox", out / "work")
    videos(out / "datasets" / "tiny-videos")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
