"""NEF fixtures made with the writer, one per format the reader supports: KL520 and KL720
legacy setup.bin, FlatBuffer setup.bin (KL720, KL530, KL630), KL730 KNE."""

from __future__ import annotations

from dataclasses import replace

from kp_backend.nef import DType, ModelSpec, SetupFormat, TensorInfo, write_nef
from kp_backend.nef.kne import c_strides
from kp_backend.nef.writer import tensor
from kp_backend.npu_types import Chip, code_from_layout


def _spec(model_id, inputs, outputs, **kw) -> ModelSpec:
    ins = [replace(t, index=i) for i, t in enumerate(inputs)]
    outs = [replace(t, index=i) for i, t in enumerate(outputs)]
    kw.setdefault("input_mem_len", 1000 + model_id)
    kw.setdefault("output_mem_len", 500 + model_id)
    kw.setdefault("command", bytes(range(37)) * (model_id % 3 + 1))
    kw.setdefault("weight", b"\xA5" * (100 + model_id))
    return ModelSpec(id=model_id, inputs=ins, outputs=outs, **kw)


def _kl520():
    return [
        _spec(32, [tensor([1, 3, 200, 200], "4W4C8B", radix=8)],
              [tensor([1, 6, 3, 3], "16W1C8B", radix=3, scale=1.058646559715271),
               tensor([1, 8, 3, 3], "16W1C8B", radix=-2, scale=0.25)], version=0xB08D),
        _spec(5, [tensor([1, 3, 56, 56], "4W4C8B", radix=7)],
              [tensor([1, 10, 1, 1], "16W1C8B", radix=2, scale=1.5)], working_mem_len=512),
    ]


def _kl720_legacy():
    return [
        _spec(3, [tensor([1, 3, 200, 200], "4W4C8B", radix=8),
                  tensor([1, 20, 4, 4], "1W16C8B", radix=6)],
              [tensor([1, 8, 25, 25], "16W1C8B", radix=6, scale=5.916024684906006),
               tensor([1, 4, 6, 6], "8W1C16B", radix=12, scale=0.5),
               tensor([1, 16, 2, 2], "1W16C8BHL", radix=9, scale=3.0),
               tensor([1, 5, 1, 1], "RAW_8B", radix=0, scale=1.0)]),
    ]


def _flatbuffer(chip: Chip):
    per_channel = tensor([1, 4, 3, 3], "16W1C8B", radix=[1, 2, 3, 4],
                         scale=[1.0, 0.5, 0.25, 2.0], name="conv/out:0")
    transposed = tensor([1, 6, 5, 7], "8W1C16B", radix=10, scale=0.75, name="head",
                        shape_onnx=[1, 5, 7, 6], permutation=[0, 2, 3, 1])
    hl = "4W4C8BHL" if chip is not Chip.KL720 else "1W16C8BHL"
    return [
        _spec(32768, [tensor([1, 3, 64, 64], "4W4C8B", radix=7, name="input.1"),
                      tensor([1, 2, 8, 8], hl, radix=3, scale=2.0, name="aux")],
              [per_channel, transposed], setup_format=SetupFormat.FLATBUFFER,
              name="model_32768.bie", setup_schema_version=(1, 2, 11),
              setup_file_schema_version=(1, 0, 3)),
        _spec(32769, [tensor([1, 3, 32, 32], "4W4C8B", radix=7, name="x")],
              [tensor([1, 1000], "RAW_FLOAT", radix=0, scale=1.0, name="logits")],
              setup_format=SetupFormat.FLATBUFFER),
    ]


def _kne():
    kl730 = Chip.KL730
    return [
        _spec(211, [tensor([1, 3, 64, 64], "4W4C8B", radix=7, name="images", chip=kl730,
                           strides=[16384, 1, 256, 4])],
              [tensor([1, 4, 8, 8], "16W1C8B", radix=[1, 2, 3, 4], scale=[1.0, 0.5, 0.25, 2.0],
                      name="out0", chip=kl730, strides=[512, 128, 16, 1]),
               tensor([1, 3, 2, 2], "1W16C8B_CH_COMPACT", radix=5, scale=300,
                      scale_dtype=DType.INT16, name="out1", chip=kl730),
               tensor([1, 2, 4, 4], "8W1C16B", radix=[4, 4], scale=[0.5, 1.5],
                      scale_dtype=DType.BFLOAT16, name="out2", chip=kl730),
               tensor([1, 7], "RAW_FLOAT", radix=0, scale=0.1, scale_dtype=DType.DOUBLE64,
                      name="out3", chip=kl730, permutation=[1, 0])],
              version=0x1A2B, setup_schema_version=(3, 0, 17)),
        _spec(212, [tensor([1, 1, 8, 8], "1W16C8B", radix=0, name="in", chip=kl730)],
              [tensor([1, 16, 1, 1], "16W1C8BHL", radix=8, scale=1.0, name="o", chip=kl730)],
              version=7),
    ]


# name -> (chip, model specs, write_nef options)
FIXTURES = {
    "KL520-legacy": (Chip.KL520, _kl520, {"compiler_version": "v0.9.0(test)"}),
    "KL720-legacy": (Chip.KL720, _kl720_legacy, {"toolchain_version": "kneron/toolchain:v0.13.1\n"}),
    "KL720-flatbuffer": (Chip.KL720, lambda: _flatbuffer(Chip.KL720), {}),
    "KL530-flatbuffer": (Chip.KL530, lambda: _flatbuffer(Chip.KL530), {"schema_version": (2, 2, 1)}),
    "KL630-flatbuffer": (Chip.KL630, lambda: _flatbuffer(Chip.KL630),
                         {"kn_number": 0x1234, "encryption_mode": 2, "platform": "96 board"}),
    "KL730-kne": (Chip.KL730, _kne, {"compiler_version": "kneron 0.25", "schema_version": (2, 2, 1)}),
}


def build(name: str) -> tuple[Chip, list[ModelSpec], dict, bytes]:
    chip, make, options = FIXTURES[name]
    specs = make()
    return chip, specs, options, write_nef(chip, specs, **options)


def expected_tensor(chip: Chip, fmt: SetupFormat, t: TensorInfo) -> TensorInfo:
    """What the reader gives back for a tensor the writer stored."""
    t = replace(t, format_code=code_from_layout(chip, t.data_layout))
    if fmt is SetupFormat.KNE and not t.stride_npu:
        t = replace(t, stride_npu=c_strides(t.shape_npu))
    if fmt is SetupFormat.LEGACY:
        t = replace(t, name="", shape_onnx=t.shape_npu,
                    axis_permutation_onnx_to_npu=tuple(range(len(t.shape_npu))))
    return t
