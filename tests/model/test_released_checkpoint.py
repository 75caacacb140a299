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


def _deepspeed_folder(root, tags, zero3_weights=None):
    """A DeepSpeed checkpoint folder with one tag per ``tags`` item ``(tag, state_dict)``, ``latest`` naming the last;
    with ``zero3_weights``, the model states hold ZeRO-3's empty placeholders and the last tag has the gathered file.
    Every model-states file also records a ``fractions.Fraction``: a global the safe loader refuses (harmless)."""
    from fractions import Fraction

    from mg_llava.model.checkpoint import DEEPSPEED_MODEL_FILE, ZERO3_WEIGHTS_FILE

    folder = os.path.join(root, "iter_7.pth")
    for tag, state_dict in tags:
        os.makedirs(os.path.join(folder, tag))
        module = {k: torch.empty(0) for k in state_dict} if zero3_weights is not None else state_dict
        torch.save(dict(module=module, ds_version="0.16.2", meta=Fraction(1, 2)),
                   os.path.join(folder, tag, DEEPSPEED_MODEL_FILE))
    if zero3_weights is not None:
        torch.save(zero3_weights, os.path.join(folder, tags[-1][0], ZERO3_WEIGHTS_FILE))
    with open(os.path.join(folder, "latest"), "w") as f:
        f.write(tags[-1][0])
    return folder


@pytest.mark.parametrize("zero3", [False, True])
def test_both_unpicklers_follow_latest_and_the_zero3_file(released, tmp_path, zero3):
    """One reader for every layout, whichever unpickler: the tag named by ``latest`` (not an older tag's file)
    and, in a ZeRO-3 folder, the gathered weights (not the empty placeholders of the model states)."""
    from mg_llava.inference.weights import UnsafeCheckpointError, read_checkpoint

    old, new = released.state_dict(seed=1), released.state_dict(seed=2)
    folder = _deepspeed_folder(str(tmp_path), [("global_step3", old), ("global_step7", new)],
                               zero3_weights=new if zero3 else None)
    full = load_trainable_state_dict(folder, unpickle=lambda f: torch.load(f, map_location="cpu", weights_only=False))
    unsafe = read_checkpoint(folder, allow_unsafe_pickle=True)  # the safe loader refuses the Fraction first
    for loaded in (full, unsafe):
        assert set(loaded) == set(new)
        for key, value in new.items():
            assert torch.equal(loaded[key], value), key
    if zero3:  # the gathered file holds tensors only, so the safe loader reads it too
        assert all(torch.equal(load_trainable_state_dict(folder)[k], v) for k, v in new.items())
    else:
        with pytest.raises(UnsafeCheckpointError, match="fractions"):
            read_checkpoint(folder)
