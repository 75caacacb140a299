"""Released-format checkpoints (SPEC 4 keys, tiny shapes) load into MGLLaVAModel in every file layout."""
import os

import pytest
import torch

from mg_llava.model import load_trainable_state_dict
from mg_llava.model.checkpoint import describe_released


@pytest.mark.parametrize("layout", ["plain", "mmengine_ddp", "deepspeed"])
def test_every_layout_loads_into_the_model(make_model, released, tmp_path, layout):
    state_dict = released.state_dict()
    path = getattr(released, "save_" + layout)(state_dict, str(tmp_path))
    loaded = load_trainable_state_dict(path)
    assert {k: v.dtype for k, v in loaded.items()} == {k: v.dtype for k, v in state_dict.items()}
    model = make_model(freeze_llm=True)
    model.load_trainable(path)
    ours = model.state_dict()
    assert set(ours) == set(state_dict)
    for key, value in state_dict.items():
        torch.testing.assert_close(ours[key], value.float(), rtol=0, atol=0, msg=key)


def test_stage2_file_with_llm_weights(make_model, released, tmp_path):
    llm_weights = {"llm." + k: v + 1 for k, v in make_model().llm.state_dict().items()}
    state_dict = {**released.state_dict(), **llm_weights}
    model = make_model()
    model.load_trainable(released.save_plain(state_dict, str(tmp_path)))
    loaded = model.state_dict()
    assert set(loaded) == set(state_dict)
    for key in ("llm.lm_head.weight", "llm.model.layers.1.mlp.down_proj.weight", "fuse_module.gate.0.weight"):
        torch.testing.assert_close(loaded[key], state_dict[key].float(), rtol=0, atol=0)


def test_pretrained_pth_loads_after_every_module_exists(make_model, tmp_path):
    """Stage 2 starts from the stage-1 result through ``pretrained_pth``; ours must round-trip exactly."""
    source = make_model(freeze_llm=True)
    with torch.no_grad():
        for p in source.fuse_module.parameters():
            p.add_(1.0)
    path = os.path.join(tmp_path, "ours.pth")
    torch.save(dict(state_dict=source.state_dict()), path)
    loaded = make_model(freeze_llm=True, pretrained_pth=path).state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_foreign_keys_and_zero3_partitions_are_refused(make_model, released, tmp_path):
    bad = dict(released.state_dict(), **{"vision_tower.proj.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"1 of 21 keys are not in this model, e\.g\. \['vision_tower\.proj"):
        make_model(freeze_llm=True).load_trainable(released.save_plain(bad, str(tmp_path)))
    partitioned = {k: torch.empty(0) for k in released.shapes}
    with pytest.raises(ValueError, match="ZeRO-3"):
        load_trainable_state_dict(released.save_deepspeed(partitioned, str(tmp_path)))


def test_describe_checks_shapes_against_spec4(released):
    summary = describe_released(released.state_dict())
    assert summary == dict(llm_hidden_size=32, visual_channels=32, box_channels=600, has_llm=False, num_tensors=20,
                           fusion=dict(low_channels=32, high_channels=320, gate_channels=16, kernel_size=7))
    broken = released.state_dict()
    broken["fuse_module.gate.0.weight"] = torch.zeros(16, 32)
    with pytest.raises(ValueError, match=r"fuse_module.gate.0.weight: \(16, 32\) vs \(16, 64\)"):
        describe_released(broken)
