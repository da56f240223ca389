"""A tiny, randomly initialised Qwen3-VL stack built in the test: no download, CPU, well under a second a step.

- tokenizer: byte-level BPE trained here with `tokenizers` on the rows' own text, plus the Qwen special tokens;
- chat template: the official Qwen3-VL one, as TRL ships it (unchanged, so TRL can swap in its training
  variant for `assistant_only_loss=True`);
- image processor: the PIL backend of the Qwen2-VL/Qwen3-VL image processor (patch 16, merge 2, as Qwen3-VL),
  with a small pixel cap so images become a handful of tokens;
- model: `Qwen3VLForConditionalGeneration` with a 2-layer text model and a 2-block vision tower (~150k parameters).

`tiny_qwen2_vl_processor` builds the Qwen2-VL / Qwen2.5-VL counterpart the same way (their processor classes, the
image processor at its own defaults, TRL's copy of the official Qwen2.5-VL template).
"""

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLConfig,
                          Qwen3VLForConditionalGeneration, Qwen3VLProcessor)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from trl.chat_template_utils import qwen2_5_vl_chat_template, qwen3_vl_chat_template

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
PATCH_SIZE, MERGE_SIZE = 16, 2
MAX_PIXELS = 64 * 64  # the generated mirror's 64x48 images become a 4x4 patch grid = 4 image tokens
VOCAB_SIZE = 400
# Qwen3-VL's released preprocessor_config.json: images resized to between 256 x 256 and 4096 x 4096 pixels.
QWEN3_VL_SIZE = {"shortest_edge": 65536, "longest_edge": 16777216}


class WithoutVideoProcessor:
    """A Qwen-VL processor without a video processor.

    The stock classes check the video processor's class against transformers' video-processor registry, which
    only exists with torchvision; images never touch the video processor, so that one check is skipped."""

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor":
            return type(argument)
        return super().check_argument_for_proper_class(argument_name, argument)


class OfflineQwen3VLProcessor(WithoutVideoProcessor, Qwen3VLProcessor):
    pass


class OfflineQwen2VLProcessor(WithoutVideoProcessor, Qwen2VLProcessor):
    pass


class OfflineQwen2_5_VLProcessor(WithoutVideoProcessor, Qwen2_5_VLProcessor):
    pass


def train_tokenizer(texts, vocab_size: int = VOCAB_SIZE) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(["user\nassistant\n", *texts], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def tiny_processor(tokenizer, max_pixels: int = MAX_PIXELS) -> Qwen3VLProcessor:
    image_processor = Qwen2VLImageProcessorPil(patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=2,
                                               size={"shortest_edge": 32 * 32, "longest_edge": max_pixels},
                                               image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return OfflineQwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                                   chat_template=qwen3_vl_chat_template)


def tiny_qwen2_vl_processor(tokenizer, version: str = "2.5"):
    """A Qwen2-VL ("2") or Qwen2.5-VL ("2.5") processor: the image processor at its own defaults (14-pixel patches
    merged 2 x 2, 56 x 56 to 28 x 28 x 1280 pixels) and the official Qwen2.5-VL chat template, which adds a
    system turn ("You are a helpful assistant.") to a conversation without one."""
    processor_class = {"2": OfflineQwen2VLProcessor, "2.5": OfflineQwen2_5_VLProcessor}[version]
    return processor_class(image_processor=Qwen2VLImageProcessorPil(), tokenizer=tokenizer, video_processor=None,
                           chat_template=qwen2_5_vl_chat_template)


def tiny_model(tokenizer, seed: int = 0) -> Qwen3VLForConditionalGeneration:
    token_id = tokenizer.convert_tokens_to_ids
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=2048,
                         # mrope_section splits head_dim / 2 rotary frequencies over (time, height, width)
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1],
                                          "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           patch_size=PATCH_SIZE, spatial_merge_size=MERGE_SIZE, temporal_patch_size=2,
                           deepstack_visual_indexes=[1], num_position_embeddings=64),
        image_token_id=token_id("<|image_pad|>"), video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"), vision_end_token_id=token_id("<|vision_end|>"),
        eos_token_id=token_id("<|im_end|>"), pad_token_id=token_id("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    return Qwen3VLForConditionalGeneration(config)


def vision_weights(model) -> dict:
    return {name: parameter.detach().clone() for name, parameter in model.model.visual.named_parameters()}


def expected_image_tokens(batch, processor) -> torch.Tensor:
    """Image tokens per image that the image grid implies: t * h * w patches / merge_size ** 2."""
    return batch["image_grid_thw"].prod(dim=-1) // processor.image_processor.merge_size ** 2
