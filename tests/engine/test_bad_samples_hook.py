"""BadSamplesHook: the samples a run leaves out at start-up and those replaced while it trains are in the work dir at
the start, at every checkpoint and at the end, and the last log line counts them; a resumed run keeps the earlier
ones. (tests/training/test_release_layout.py runs it in `xtuner train` with two ranks and DataLoader workers.)"""
import json
from types import SimpleNamespace

from mg_llava.dataset import BadSample
from mg_llava.engine import BadSamplesHook
from mg_llava.engine import bad_samples_hook as hook_module


def runner_at(work_dir, iteration, dataset):
    return SimpleNamespace(work_dir=str(work_dir), iter=iteration, train_dataloader=SimpleNamespace(dataset=dataset))


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def batch(*records):
    return {"data": {}, "data_samples": {"replaced": list(records)} if records else None}


def test_startup_and_replaced_samples_reach_the_file_at_checkpoints_and_the_end(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(hook_module, "print_log", lambda msg, **kwargs: logged.append(msg))
    part_a = SimpleNamespace(skipped=[BadSample("missing box entry: no entry", "7", "a.json", "item 3")])
    part_b = SimpleNamespace(skipped=[BadSample("no answer tokens within max_length=8", "9", "b.json", "item 0")])
    mixture = SimpleNamespace(datasets=[part_a, part_b])
    hook, runner = BadSamplesHook(), runner_at(tmp_path, 0, mixture)
    hook.before_train(runner)
    path = tmp_path / "skipped_samples.jsonl"
    assert [(r["id"], r["file"], r["when"]) for r in read(path)] == [("7", "a.json", "start-up"),
                                                                   ("9", "b.json", "start-up")]
    gone = BadSample("unreadable image (missing): x.jpg", "12", "a.json", "item 5").record()
    hook.after_train_iter(runner, 0, batch())
    runner.iter = 1
    hook.after_train_iter(runner, 1, batch(gone))
    hook.before_save_checkpoint(runner, {})
    at_checkpoint = read(path)
    assert at_checkpoint[2] == dict(gone, when="replaced", iteration=2, rank=0)
    runner.iter = 2
    hook.after_train_iter(runner, 2, batch(gone))
    hook.after_train(runner)
    assert len(read(path)) == 4 and read(path)[3]["iteration"] == 3
    assert logged[-1].startswith("bad samples: 4 in all, 2 left out at start-up and 2 replaced during training")

    resumed = BadSamplesHook()  # resumed from the checkpoint of iteration 2: the replacement of iteration 3 is redone
    resumed.before_train(runner_at(tmp_path, 2, mixture))
    assert read(path) == at_checkpoint


def test_a_clean_run_says_so(tmp_path, monkeypatch):
    logged = []
    monkeypatch.setattr(hook_module, "print_log", lambda msg, **kwargs: logged.append(msg))
    hook, runner = BadSamplesHook(), runner_at(tmp_path, 0, SimpleNamespace(skipped=[]))
    hook.before_train(runner)
    hook.after_train_iter(runner, 0, batch())
    hook.after_train(runner)
    assert read(tmp_path / "skipped_samples.jsonl") == [] and logged == [
        f"bad samples: none (listed in {tmp_path / 'skipped_samples.jsonl'}: empty)"]
