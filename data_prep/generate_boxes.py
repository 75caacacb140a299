"""Generate boxes (tagger -> OWLv2 -> optional NMS) for one shard of a dataset; resumable.

    # one process
    python data_prep/generate_boxes.py --data llava_v1_5_mix665k.json --image-folder data/ \
        --out-dir work_dirs/boxes_665k --tagger ram_plus --ram-checkpoint ram_plus_swin_large_14m.pth
    # 8 GPUs: one shard each, then merge
    torchrun --nproc_per_node 8 data_prep/generate_boxes.py ... --out-dir work_dirs/boxes_665k
    python data_prep/merge_boxes.py --out-dir work_dirs/boxes_665k
    # slurm array: --shard $SLURM_ARRAY_TASK_ID --num-shards $SLURM_ARRAY_TASK_COUNT
"""
from mg_llava.boxgen.cli import generate_main

if __name__ == "__main__":
    generate_main()
