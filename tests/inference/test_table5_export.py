"""A Table 5 ablation model (here a Perceiver Resampler with F-to-B cross-attention) goes through checkpoint loading
and export like the reference model: its modules are saved, the spec rebuilds them, and the logits come back equal."""
import json
import os.path as osp

import torch

from inference_helpers import MEMORISED


def test_ablation_model_loads_and_exports(spec, tiny_data, tmp_path):
    from mg_llava.dataset import load_box_file
    from mg_llava.inference import load_exported
    from mg_llava.inference.build import build_from_spec
    from mg_llava.inference.export import export_model
    from mg_llava.inference.generation import llm_inputs_for_generation, pad_token_id
    from mg_llava.inference.loading import load_from_spec

    ablation = dict(spec, fusion=dict(type="PerceiverResampler", num_latents=5, depth=1, num_heads=4),
                    object_merge=dict(type="FusedToBoxCrossAttention", num_heads=4))
    torch.manual_seed(0)
    model = build_from_spec(ablation)
    with torch.no_grad():  # off the zero-initialised output projection, so the boxes matter
        model.object_merge.block.attention.out_proj.weight.normal_()
    checkpoint = str(tmp_path / "ablation.pth")
    torch.save(model.state_dict(), checkpoint)
    assert {k.split(".")[0] for k in model.state_dict()} == {"fuse_module", "projector", "object_merge", "llm"}

    loaded = load_from_spec(ablation, checkpoint, device="cpu")
    back = load_exported(export_model(loaded, str(tmp_path / "export")), device="cpu")
    with open(tmp_path / "export" / "mg_llava.json") as f:
        exported_spec = json.load(f)
    assert exported_spec["object_merge"]["type"] == "FusedToBoxCrossAttention"
    assert exported_spec["fusion"]["type"] == "PerceiverResampler"

    name, question, _ = MEMORISED
    image = loaded.preprocessor.prepare_image(osp.join(tiny_data["image_folder"], f"{name}.jpg"),
                                              (load_box_file(tiny_data["boxes"]), name))
    assert len(image.boxes) > 0
    samples = [loaded.preprocessor.sample(question, (), image)]
    logits = []
    for candidate in (loaded, back):
        inputs = llm_inputs_for_generation(candidate.model, samples, pad_token_id(candidate.tokenizer), "cpu")
        with torch.no_grad():
            logits.append(candidate.model.llm(**inputs).logits)
    # the image placeholder became 5 latents, and its boxes no token of their own
    assert logits[0].shape[1] == len(samples[0]["input_ids"]) - 1 + 5
    assert torch.equal(logits[0], logits[1])
