"""token_mean.py: with the processes' gradients averaged (what DDP and ZeRO do), the loss is one mean over the global
batch's answer tokens. Two processes are played in one: the all-reduce of the token count returns the two processes'
sum. A float64 tiny Llama: transformers takes the cross-entropy in float32, the same per token in both, and the
rest (sums over tokens, the backward) runs in float64, whose rounding (2^-53) stays far below the 1e-12 compared to."""
import torch

from mg_llava.model import token_mean
from mg_llava.model.token_mean import mean_over_processes, tokens_per_process

IGNORE = -100


def _batch():
    """4 samples of 6 tokens whose answers hold 5, 4, 1 and 2 target tokens (the first process 9, the second 3)."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 32, (4, 6), generator=generator)
    labels = input_ids.clone()
    for row, prompt in enumerate((0, 1, 4, 3)):  # targets: labels[:, 1:] past the prompt, 5 - prompt
        labels[row, :prompt + 1] = IGNORE
    return input_ids, labels


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16)
    return LlamaForCausalLM(config).double()


def _gradient(model, **inputs):
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]), loss.detach()


def test_two_processes_give_the_gradient_of_one_token_mean(monkeypatch):
    input_ids, labels = _batch()
    model = _model()
    assert tokens_per_process(labels) == 5 + 4 + 1 + 2  # one process: the batch's own count
    assert tokens_per_process(torch.full((2, 3), IGNORE)) == 1  # no targets: a zero loss, not 0 / 0
    single, single_loss = _gradient(model, input_ids=input_ids, labels=labels)  # one process: one token mean

    halves = [slice(0, 2), slice(2, 4)]
    total = sum((labels[half][:, 1:] != IGNORE).sum() for half in halves)
    monkeypatch.setattr(token_mean, "get_world_size", lambda: 2)
    monkeypatch.setattr(token_mean, "all_reduce", lambda tensor, op: tensor.fill_(total))
    token_means, per_process = [], []
    for half in halves:
        token_means.append(_gradient(model, input_ids=input_ids[half], labels=labels[half],
                                     num_items_in_batch=tokens_per_process(labels[half])))
        per_process.append(_gradient(model, input_ids=input_ids[half], labels=labels[half]))  # XTuner's
    averaged = (token_means[0][0] + token_means[1][0]) / 2
    torch.testing.assert_close(averaged, single, rtol=1e-12, atol=1e-12)
    # the logged loss: the processes' losses averaged (their all-reduced sum over 2)
    losses = [loss for _, loss in token_means]
    monkeypatch.setattr(token_mean, "all_gather_object", lambda names: [names, names])

    def add_the_other_process(tensor, op):  # (sums, counts): both processes logged the loss
        tensor[0].fill_(float(sum(losses)))
        tensor[1].fill_(2)

    monkeypatch.setattr(token_mean, "all_reduce", add_the_other_process)
    logged = mean_over_processes({"loss": losses[0]})["loss"]
    # float32: two per-process losses, their sum and its half, each rounded once (2^-24): within 2^-22
    torch.testing.assert_close(logged, single_loss, rtol=2.0 ** -22, atol=0)
    # XTuner's per-process mean weighs the second process's 3 tokens as the first's 9: another gradient
    wrong = (per_process[0][0] + per_process[1][0]) / 2
    gap = ((wrong - single).abs().max() / single.abs().max()).item()
    assert gap > 1e-2, f"a per-process mean matched the token mean ({gap:.2g}): the batch cannot tell them apart"


def _log_in_two_processes(rank, port, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        # a text-only batch logs no visual_norm; names in another order on each process
        mine = ({"loss": torch.tensor(1.0), "visual_norm": torch.tensor(8.0), "text_norm": torch.tensor(0.5)}
                if rank == 0 else {"text_norm": torch.tensor(0.25), "loss": torch.tensor(3.0)})
        out[rank] = {k: float(v) for k, v in mean_over_processes(mine).items()}
    finally:
        dist.destroy_process_group()


def test_processes_logging_different_names_average_each_over_those_that_logged_it():
    """Two real (gloo) processes whose log names differ in one step (a text-only batch has no visual_norm): every
    name is averaged over the processes that logged it, the same on both. Reducing each process's values in its own
    order paired different names (or hung on unequal lengths)."""
    import torch.multiprocessing as mp
    from local_slurm import free_port

    port = free_port()
    out = mp.Manager().dict()
    mp.spawn(_log_in_two_processes, args=(port, out), nprocs=2, join=True)
    expected = {"loss": 2.0, "text_norm": 0.375, "visual_norm": 8.0}
    assert dict(out[0]) == expected and dict(out[1]) == expected
