"""Export 14 more torchvision models (random weights) to ONNX: a second outside set for the kernel predictor.

Nobody in this project wrote these; none is in ``../shared/outside-check`` (whose 14 CNNs are a
different list) and none was looked at while the predictor was tuned.  They add families the zoo
does not hold in this form: EfficientNetV2 (fused MBConv), Inception-v3 (1x7 / 7x1 kernels),
Wide ResNet, RegNetY, AlexNet, Swin-T (windowed attention), torchvision's ConvNeXt-T.  Exported as
``../shared/outside-check/export_zoo.py`` does (torch's legacy exporter, opset 17, batch 1).
Needs torchvision, which hwnas does not depend on: run it with a Python that has it, e.g. the
venv the outside check makes (``${TMPDIR:-/tmp}/outside-tvenv``)::

    /tmp/outside-tvenv/bin/python benchmarks/torchvision_zoo.py OUT_DIR
    hwnas predict OUT_DIR/*.onnx --predictor kernel --json > pred.json
    python ../shared/outside-check/measure.py OUT_DIR/*.onnx --canary CANARY.onnx --rounds 5 --runs 10 > meas.json
    python ../shared/outside-check/judge.py pred.json meas.json "torchvision, second set" 0.85
"""

import sys
import warnings

import torch
import torchvision.models as tvm

ZOO = {
    "efficientnet_v2_s_192": (tvm.efficientnet_v2_s, 192), "efficientnet_b2_192": (tvm.efficientnet_b2, 192),
    "inception_v3_224": (lambda: tvm.inception_v3(aux_logits=False, init_weights=False), 224),
    "wide_resnet50_2_128": (tvm.wide_resnet50_2, 128), "resnet50_192": (tvm.resnet50, 192),
    "regnet_y_400mf": (tvm.regnet_y_400mf, 224), "regnet_x_800mf": (tvm.regnet_x_800mf, 224),
    "resnext50_32x4d_160": (tvm.resnext50_32x4d, 160), "convnext_tiny_128": (tvm.convnext_tiny, 128),
    "alexnet": (tvm.alexnet, 224), "shufflenet_v2_x0_5": (tvm.shufflenet_v2_x0_5, 224),
    "mnasnet0_75": (tvm.mnasnet0_75, 224), "squeezenet1_0": (tvm.squeezenet1_0, 224),
    "swin_t_128": (tvm.swin_t, 128),
}


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: torchvision_zoo.py OUT_DIR", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    for name, (build, res) in ZOO.items():
        torch.onnx.export(build().eval(), (torch.randn(1, 3, res, res),), f"{sys.argv[1]}/{name}.onnx", dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"])
        print(name, res, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
