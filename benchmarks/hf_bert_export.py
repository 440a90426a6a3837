"""Hugging Face BERT encoders as ONNX, for ``benchmarks/fused_attention.py``'s outside set.

Ten encoders (width 128-768, 4-6 layers, 2-12 heads, 64-512 tokens) with random weights (nothing is
downloaded), eager attention (the layout ``onnxruntime.transformers``' optimizer fuses; transformers'
default SDPA export it does not), exported by torch's exporter at opset 17 with static shapes and one
input, the token ids (the attention mask all ones, built inside the graph).  Needs ``transformers``,
which hwnas does not: run it in a venv of its own::

    python -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install torch transformers onnx
    /tmp/hfvenv/bin/python benchmarks/hf_bert_export.py /tmp/hf/raw
    python benchmarks/fused_attention.py --onnx /tmp/hf/raw/*.onnx --fuse bert
"""

import os
import sys

import torch
from transformers import BertConfig, BertModel

#: (width, layers, heads, tokens)
CONFIGS = ((256, 4, 4, 128), (384, 4, 6, 256), (512, 4, 8, 128), (256, 6, 4, 384), (768, 4, 12, 128),
           (192, 6, 3, 64), (320, 4, 5, 192), (128, 4, 2, 512), (512, 6, 8, 256), (768, 6, 12, 64))


class _Encoder(torch.nn.Module):
    def __init__(self, model: BertModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids, attention_mask=torch.ones_like(ids)).last_hidden_state


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: hf_bert_export.py OUT_DIR", file=sys.stderr)
        return 2
    out = argv[0]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for width, layers, heads, tokens in CONFIGS:
        name = f"hf_bert_{width}x{layers}_h{heads}_t{tokens}"
        cfg = BertConfig(hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=4 * width, max_position_embeddings=max(512, tokens), vocab_size=1000,
                         attn_implementation="eager")
        model = _Encoder(BertModel(cfg, add_pooling_layer=False).eval())
        torch.onnx.export(model, (torch.zeros(1, tokens, dtype=torch.long),), os.path.join(out, f"{name}.onnx"),
                          opset_version=17, dynamo=False, input_names=["input_ids"], output_names=["output"])
        print(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
