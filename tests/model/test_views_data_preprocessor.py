"""ViewsDataPreprocessor: the training loader's uint8 views become, in the model's data preprocessor, exactly the
float views ImageViews makes on the CPU (and made before the loader handed over uint8)."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessor
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from mg_llava.dataset import ImageViews, LLaVABoxDataset, PROMPT_TEMPLATE, llava_box_collate_fn
from mg_llava.model import ViewsDataPreprocessor
from mg_llava.testing.images import load_skimage
from mg_llava.testing.tiny_models import HIGH_RES


def photos():
    """Real photographs of several aspect ratios: landscape, portrait, square, tall, wide."""
    coffee = load_skimage("coffee")  # 600 x 400
    return [load_skimage("chelsea"), coffee.crop((150, 0, 450, 400)), load_skimage("astronaut"),
            load_skimage("rocket"), coffee.crop((0, 100, 600, 250))]


def float_views_before_uint8(views, image):
    """The float views as ImageViews made them before the uint8 hand-over (a frozen copy of that code): PIL
    resize of the padded square, float64 rescale, float32 normalisation, bilinear resize of the (1, 3, S, S)."""
    resized = views.pad_to_square(image.convert("RGB")).resize((views.high_res, views.high_res), views.resample)
    pixels = torch.from_numpy(np.array(resized)).permute(2, 0, 1)
    mean = torch.tensor(views.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(views.std, dtype=torch.float32).view(3, 1, 1)
    aux = pixels.double().mul_(1 / 255).float().sub_(mean).div_(std)[None]
    low = F.interpolate(aux, size=(views.low_res, views.low_res), mode="bilinear", align_corners=False)
    return low[0], aux[0]


@pytest.mark.parametrize("high_res, low_res", [(768, 336), (HIGH_RES, 56)])
def test_finished_views_equal_the_float_views_bit_for_bit(high_res, low_res):
    processor = CLIPImageProcessor(crop_size={"height": low_res, "width": low_res}, image_mean=OPENAI_CLIP_MEAN,
                                   image_std=OPENAI_CLIP_STD)
    views = ImageViews(processor, high_res=high_res)
    images = photos()
    # what the loader hands over: channels-last views of the resized images, batched as they are
    pixels = llava_box_collate_fn([dict(input_ids=torch.tensor([-200]), labels=torch.tensor([-100]),
                                        pixel_values_aux=views.pixels(image).pixels[None], boxes=[torch.zeros(0, 4)])
                                   for image in images])["data"]["pixel_values_aux"]
    assert pixels.dtype == torch.uint8 and pixels.is_contiguous(memory_format=torch.channels_last)
    preprocessor = ViewsDataPreprocessor.from_image_views(views)
    data = preprocessor({"data": dict(pixel_values_aux=pixels), "data_samples": None}, training=True)["data"]
    assert data["pixel_values"].dtype == data["pixel_values_aux"].dtype == torch.float32
    assert data["pixel_values"].is_contiguous() and data["pixel_values_aux"].is_contiguous()
    contiguous = preprocessor({"data": dict(pixel_values_aux=pixels.contiguous())})["data"]  # any layout
    for key in ("pixel_values", "pixel_values_aux"):
        assert torch.equal(contiguous[key], data[key])
    for i, image in enumerate(images):
        low, aux = float_views_before_uint8(views, image)
        assert torch.equal(data["pixel_values_aux"][i], aux) and torch.equal(data["pixel_values"][i], low), image.size
        on_cpu = views(image)  # chat and evaluation: the same functions, on the CPU
        assert torch.equal(on_cpu.pixel_values_aux, aux) and torch.equal(on_cpu.pixel_values, low)


def test_float_views_pass_and_uint8_tiles_are_normalised():
    preprocessor = ViewsDataPreprocessor(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, low_res=4)
    low, aux = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 8, 8)
    data = preprocessor({"data": dict(pixel_values=low, pixel_values_aux=aux), "data_samples": None})["data"]
    assert data["pixel_values"] is low and data["pixel_values_aux"] is aux
    tiles = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)  # a loader's own low-res tiles
    aux8 = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    data = preprocessor({"data": dict(pixel_values=tiles, pixel_values_aux=aux8), "data_samples": None})["data"]
    mean = torch.tensor(OPENAI_CLIP_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD, dtype=torch.float32).view(3, 1, 1)
    assert torch.equal(data["pixel_values"], (tiles.double() / 255).float().sub(mean).div(std))
    assert data["pixel_values_aux"].shape == (2, 3, 8, 8)
    text_only = {"data": dict(input_ids=torch.ones(1, 2, dtype=torch.long)), "data_samples": None}
    assert set(preprocessor(text_only)["data"]) == {"input_ids"}


@pytest.fixture(scope="module")
def datasets(tiny_models, tmp_path_factory):
    """The same tiny data through the uint8 hand-over (the default) and through float views."""
    from transformers import AutoTokenizer
    from xtuner.dataset.map_fns import template_map_fn_factory

    root = tmp_path_factory.mktemp("views_data")
    names = ["chelsea", "coffee_portrait", "astronaut", "rocket"]
    for name, image in zip(names, photos()):
        image.save(root / f"{name}.png")
    samples, entries = [], []
    for i, name in enumerate(names):
        samples.append({"id": name, "image": f"{name}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is in the image?"}, {"from": "gpt", "value": f"A {name}."}]})
        entries.append({"id": name, "boxes": [[5, 5, 100 + 20 * i, 120], [30, 40, 90, 200]][:i % 3],
                        "scores": [0.9, 0.5][:i % 3], "labels": ["a", "b"][:i % 3]})
    samples.insert(1, {"id": "text", "conversations": [{"from": "human", "value": "Say yes."},
                                                       {"from": "gpt", "value": "Yes."}]})
    (root / "data.json").write_text(json.dumps(samples))
    (root / "boxes.json").write_text(json.dumps(entries))
    views = ImageViews(CLIPImageProcessor.from_pretrained(tiny_models["clip"]), high_res=HIGH_RES)
    common = dict(image_folder=str(root), image_views=views, data_path=str(root / "data.json"),
                  box_file=str(root / "boxes.json"), tokenizer=AutoTokenizer.from_pretrained(tiny_models["llm_vicuna"]),
                  template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna),
                  max_length=128, num_proc=1)
    return LLaVABoxDataset(**common), LLaVABoxDataset(**common, uint8_views=False), views


def test_loss_through_the_uint8_hand_over_equals_the_float_path(make_model, datasets):
    uint8_data, float_data, views = datasets
    preprocessor = dict(type=ViewsDataPreprocessor, mean=views.mean, std=views.std, low_res=views.low_res)
    model = make_model(data_preprocessor=preprocessor)
    assert isinstance(model.data_preprocessor, ViewsDataPreprocessor)
    uint8_batch = llava_box_collate_fn([uint8_data[i] for i in range(len(uint8_data))])
    float_batch = llava_box_collate_fn([float_data[i] for i in range(len(float_data))])
    assert uint8_batch["data"]["pixel_values_aux"].dtype == torch.uint8
    assert uint8_batch["data"]["pixel_values_aux"].nbytes * 4 == float_batch["data"]["pixel_values_aux"].nbytes

    with pytest.raises(ValueError, match="data_preprocessor"):  # uint8 views straight into the model
        model(**uint8_batch, mode="loss")
    finished = model.data_preprocessor(uint8_batch, training=True)
    passed = model.data_preprocessor(float_batch, training=True)
    for key in ("pixel_values", "pixel_values_aux"):
        assert torch.equal(finished["data"][key], passed["data"][key]), key
    torch.manual_seed(0)
    loss = model(**finished, mode="loss")["loss"]
    torch.manual_seed(0)
    float_loss = model(**passed, mode="loss")["loss"]
    assert torch.isfinite(loss) and torch.equal(loss, float_loss)


def test_decoded_images_resized_on_the_device_give_the_same_views_and_loss(make_model, datasets):
    """``resize_on_device``: the loader hands over the decoded images; the preprocessor pads and resizes them and the
    batch equals the uint8 hand-over's, view for view, and so does the loss."""
    uint8_data, _, views = datasets
    on_device = copy.copy(uint8_data)
    on_device.resize_on_device = True
    samples = [on_device[i] for i in range(len(on_device))]
    assert [tuple(image.shape) for image in samples[0]["images"]] == [(3, 300, 451)]  # chelsea as decoded
    assert samples[1]["images"] == [] and "pixel_values_aux" not in samples[0]
    batch = llava_box_collate_fn(samples)
    reference = llava_box_collate_fn([uint8_data[i] for i in range(len(uint8_data))])
    assert len(batch["data"]["images"]) == len(reference["data"]["pixel_values_aux"]) == 4
    for got, expected in zip(batch["data"]["boxes"], reference["data"]["boxes"]):
        assert torch.equal(got, expected)

    model = make_model(data_preprocessor=dict(type=ViewsDataPreprocessor, mean=views.mean, std=views.std,
                                              low_res=views.low_res, high_res=views.high_res))
    finished = model.data_preprocessor(batch, training=True)
    expected = model.data_preprocessor(reference, training=True)
    assert "images" not in finished["data"]
    for key in ("pixel_values", "pixel_values_aux"):
        assert torch.equal(finished["data"][key], expected["data"][key]), key
    torch.manual_seed(0)
    loss = model(**finished, mode="loss")["loss"]
    torch.manual_seed(0)
    assert torch.isfinite(loss) and torch.equal(loss, model(**expected, mode="loss")["loss"])

    without_side = ViewsDataPreprocessor(views.mean, views.std, low_res=views.low_res)
    with pytest.raises(ValueError, match="high_res"):
        without_side(llava_box_collate_fn(samples))
    with pytest.raises(ValueError, match="different forms.*decoded"):  # one sample from each hand-over
        llava_box_collate_fn([samples[0], uint8_data[2]])
    with pytest.raises(ValueError, match="uint8_views"):
        LLaVABoxDataset(image_folder="x", image_views=views, offline_processed_text_folder="x", uint8_views=False,
                        resize_on_device=True)
