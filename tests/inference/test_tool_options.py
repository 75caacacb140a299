"""The tools take ``--cfg-options`` as ``xtuner train`` does (a shipped config whose paths are relative to the
repository, used from elsewhere), and a model without object tokens starts from a file that has them."""
import os.path as osp

import pytest
import torch

from inference_helpers import MEMORISED, ROI_OUTPUT_SIZE
from tool_helpers import ROOT, load_tool


def test_shipped_config_with_cfg_options_from_another_directory(tiny_models, tiny_data, trained_checkpoint,
                                                                 tmp_path, monkeypatch):
    """tools/chat.py on the shipped tiny stage-2 config, run from a directory where its relative asset paths do not
    exist: --cfg-options points them at the tiny models and gives the same answer as the model trained on them."""
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py")
    llm, clip = tiny_models["llm_vicuna"], tiny_models["clip"]
    options = [f"tokenizer.pretrained_model_name_or_path={llm}", f"model.llm.pretrained_model_name_or_path={llm}",
               f"model.visual_encoder.pretrained_model_name_or_path={clip}",
               f"model.visual_encoder_aux.model_name=local-dir:{tiny_models['convnext']}",
               f"llava_dataset.image_views.image_processor.pretrained_model_name_or_path={clip}",
               f"model.object_features.output_size={ROI_OUTPUT_SIZE}"]
    name, question, answer = MEMORISED
    chat = load_tool("chat").main
    image = ["--image", osp.join(tiny_data["image_folder"], f"{name}.jpg"), "--boxes", tiny_data["boxes"],
             "--box-id", name, "--prompt", question, "--max-new-tokens", "12", "--device", "cpu"]
    with pytest.raises(OSError):  # the config's own paths are relative to the repository root
        chat(["--config", config, "--checkpoint", trained_checkpoint, *image])
    answers = chat(["--config", config, "--checkpoint", trained_checkpoint, "--cfg-options", *options, *image])
    assert answers == [answer]
    with pytest.raises(SystemExit, match="give --config too"):
        chat(["--checkpoint", trained_checkpoint, "--cfg-options", f"model.llm.pretrained_model_name_or_path={llm}",
              *image])


def test_model_without_object_tokens_starts_from_a_file_with_them(spec, trained_checkpoint, monkeypatch):
    import mg_llava.model.mg_llava_model as module
    from mg_llava.inference.build import build_from_spec

    messages = []
    monkeypatch.setattr(module, "print_log", lambda message, *args, **kwargs: messages.append(message))
    saved = torch.load(trained_checkpoint, weights_only=True)
    assert any(k.startswith("bbox_projector.") for k in saved)
    model = build_from_spec(dict(spec, object_features=None))
    assert model.bbox_projector is None
    model.load_trainable(trained_checkpoint)
    assert any("no object tokens; ignoring its 4 bbox_projector.* tensors" in m for m in messages), messages
    ours = torch.nn.Module.state_dict(model)
    for key, value in saved.items():
        if not key.startswith("bbox_projector."):
            assert torch.equal(ours[key], value), key
    with_tokens = build_from_spec(spec)
    with_tokens.load_trainable(trained_checkpoint)  # the full model keeps refusing nothing and loading everything
    assert torch.equal(torch.nn.Module.state_dict(with_tokens)["bbox_projector.model.0.weight"],
                       saved["bbox_projector.model.0.weight"])
