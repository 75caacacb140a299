"""Stage 2 names stage 1 by its work dir: the last checkpoint is found whatever the iteration count (two processes
halve it), and an empty work dir is an error naming the folder."""
import os

import pytest

from mg_llava.model.work_dir import is_work_dir, last_checkpoint, resolve_checkpoint


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_last_checkpoint_is_the_one_mmengine_names(tmp_path):
    """Two processes wrote iter_10.pth (a DeepSpeed folder) where one process writes iter_20.pth."""
    (tmp_path / "iter_5.pth").mkdir()
    (tmp_path / "iter_10.pth").mkdir()
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_10.pth"))
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / "iter_10.pth")
    assert resolve_checkpoint(str(tmp_path)) == str(tmp_path / "iter_10.pth")
    # a DeepSpeed checkpoint folder is a checkpoint, not a work dir
    assert not is_work_dir(str(tmp_path / "iter_10.pth"))
    assert resolve_checkpoint(str(tmp_path / "iter_10.pth")) == str(tmp_path / "iter_10.pth")


def test_moved_work_dir_and_no_marker_fall_back_to_the_highest_iteration(tmp_path):
    for n in (3, 20, 9):
        _touch(tmp_path / f"iter_{n}.pth")
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / "iter_20.pth")  # numeric, not lexical
    (tmp_path / "last_checkpoint").write_text("/elsewhere/run/iter_9.pth")  # the run's folder was moved here
    assert last_checkpoint(str(tmp_path)) == str(tmp_path / "iter_9.pth")
    file = tmp_path / "iter_3.pth"
    assert resolve_checkpoint(str(file)) == str(file)


def test_a_work_dir_without_checkpoints_is_an_error_naming_it(tmp_path):
    (tmp_path / "20261207_043000").mkdir()  # mmengine's log folder only
    assert is_work_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        resolve_checkpoint(str(tmp_path))
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_20.pth"))  # names a deleted checkpoint
    assert is_work_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no checkpoint in this work dir"):
        resolve_checkpoint(str(tmp_path))
    os.remove(tmp_path / "last_checkpoint")


def test_deepspeed_folders_are_checkpoints(tmp_path):
    """mmengine's DeepSpeed iter_N.pth/ folders: the model states in a tag folder named by 'latest', or the gathered
    ZeRO-3 weights; a folder named like a checkpoint is one even before DeepSpeed wrote into it."""
    tagged = tmp_path / "run" / "iter_4.pth"
    _touch(tagged / "global_step4" / "mp_rank_00_model_states.pt")
    (tagged / "latest").write_text("global_step4")
    assert not is_work_dir(str(tagged)) and is_work_dir(str(tagged.parent))
    assert last_checkpoint(str(tagged.parent)) == str(tagged)
    other = tmp_path / "exported_weights"
    _touch(other / "trainable_weights_16bit.pt")
    assert not is_work_dir(str(other))
