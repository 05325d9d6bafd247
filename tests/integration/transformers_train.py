"""A tiny Hugging Face Trainer run on CPU, recorded with ProvTrainerCallback (for the tests):

    python transformers_train.py SAVE_DIR OUTPUT_DIR            # one process
    torchrun --nproc_per_node 2 transformers_train.py SAVE_DIR OUTPUT_DIR

The model is built from a config (no download): a 1-layer BERT classifier on random tokens.
8 optimizer steps, logged every 2, evaluated and checkpointed every 4.
"""

from __future__ import annotations

import sys

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from yprov_hpc.integrations.transformers import ProvTrainerCallback


class Tokens(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 64, (n, 12), generator=g)
        self.labels = (self.ids[:, 0] % 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def main() -> None:
    save_dir, output_dir = sys.argv[1:3]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=8,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="steps",
        save_steps=4,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    callback = ProvTrainerCallback("www.example.org", "hf_tiny", save_dir, handle_sigterm=False)
    trainer = Trainer(
        model=model, args=args, train_dataset=Tokens(64, 1), eval_dataset=Tokens(16, 2), callbacks=[callback]
    )
    trainer.train()


if __name__ == "__main__":
    main()
