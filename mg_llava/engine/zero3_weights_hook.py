"""Next to each ZeRO-3 checkpoint, the trainable weights gathered into one plain file.

A ZeRO-3 checkpoint holds every weight only as shards inside the optimizer-state files (one per process, pickled
with DeepSpeed's own objects); its model-states file has empty placeholders. Stage 2's ``pretrained_pth``, the
export and chat would have to unpickle and reassemble those shards. DeepSpeed gathers them for us when asked
(``save_16bit_model``, enabled by ``stage3_gather_16bit_weights_on_model_save``, which the ZeRO-3 configs set), so
after each checkpoint this hook writes ``<iter_N.pth>/trainable_weights_16bit.pt``: the trainable weights in
released key names, in the training dtype, a plain state dict that ``load_trainable_state_dict`` reads with
``weights_only=True``.
"""
import os.path as osp

from mmengine.hooks import Hook

from mg_llava.model.checkpoint import ZERO3_WEIGHTS_FILE
from mg_llava.registry import MODELS


@MODELS.register_module()
class ZeRO3TrainableWeightsHook(Hook):
    """Write ``ZERO3_WEIGHTS_FILE`` into each new checkpoint folder of a ZeRO-3 run (other runs: nothing)."""

    priority = "LOWEST"  # after CheckpointHook (VERY_LOW) has saved and published ``last_ckpt``

    def __init__(self):
        self._written = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        checkpoint = runner.message_hub.get_info("last_ckpt")
        if checkpoint is None or checkpoint == self._written:
            return
        self._written = checkpoint
        engine = getattr(runner.model, "model", None)  # MMDeepSpeedEngineWrapper -> DeepSpeedEngine
        if engine is None or not hasattr(engine, "zero_optimization_partition_weights"):
            return
        if not engine.zero_optimization_partition_weights():
            return
        if not engine.zero_gather_16bit_weights_on_model_save():
            raise ValueError("ZeRO3TrainableWeightsHook needs zero_optimization.stage3_gather_16bit_weights_on_model_save"
                             "=True in the DeepSpeed config")
        # every process takes part in the gathering; rank 0 writes
        engine.save_16bit_model(checkpoint, ZERO3_WEIGHTS_FILE, exclude_frozen_parameters=True)
        runner.logger.info(f"Saved the gathered trainable weights to {osp.join(checkpoint, ZERO3_WEIGHTS_FILE)}")
