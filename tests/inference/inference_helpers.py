"""Constants and builders shared by the inference tests (a uniquely named module: tests/ has no packages)."""
import hashlib

import torch

from mg_llava.testing.released import released_shapes

TRAIN_STEPS = 120
ROI_OUTPUT_SIZE = 14
MEMORISED = ("chelsea", "What is the main object in the image?", "a cat")  # training samples the model learns
MEMORISED_TEXT = ("What is two plus two?", "four")


def tiny_dataset(tiny_data, views, tokenizer, template="vicuna", data_path=None, **kwargs):
    from xtuner.dataset.map_fns import template_map_fn_factory

    from mg_llava.dataset import PROMPT_TEMPLATE, LLaVABoxDataset

    return LLaVABoxDataset(image_folder=tiny_data["image_folder"], image_views=views,
                           data_path=data_path or tiny_data["finetune"], tokenizer=tokenizer,
                           box_file=tiny_data["boxes"], max_length=512, num_proc=1,
                           template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE[template]),
                           **kwargs)


def _key(tensor):
    return hashlib.sha1(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def memoize_frozen_parts(model):
    """Compute the frozen, parameter-free parts (both encoders, RoI features) once per image during the test
    training: they have no gradient and the same input always gives the same output."""
    def rows(original):
        cache = {}

        def forward(pixel_values):
            keys = [_key(p) for p in pixel_values]
            todo = [i for i, k in enumerate(keys) if k not in cache]
            if todo:
                out = original(pixel_values[todo])
                for j, i in enumerate(todo):
                    cache[keys[i]] = [m[j] for m in out] if isinstance(out, list) else out[j]
            first = cache[keys[0]]
            if isinstance(first, list):
                return [torch.stack([cache[k][s] for k in keys]) for s in range(len(first))]
            return torch.stack([cache[k] for k in keys])
        return forward

    model.visual_encoder.forward = rows(model.visual_encoder.forward)
    model.visual_encoder_aux.forward = rows(model.visual_encoder_aux.forward)
    original, cache = model.object_features.forward, {}

    def object_features(stage_maps, boxes, image_size):
        out = []
        for i, b in enumerate(boxes):
            key = _key(stage_maps[-1][i]) + _key(b)
            if key not in cache:
                cache[key] = original([m[i:i + 1] for m in stage_maps], [b], image_size)[0]
            out.append(cache[key])
        return out

    model.object_features.forward = object_features


RELEASED_SHAPES = released_shapes()  # SPEC 4 keys at the tiny models' sizes
