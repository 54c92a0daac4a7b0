"""Generic raw inference with device pre-processing (our port of Kneron's legacy
``KL520DemoGenericInference.py`` / ``KL720DemoGenericInference.py``).

Sends an RGB565 or RGBA8888 image, lets the dongle resize, pad and normalise it, receives
the raw result and decodes every output node to float.

    KP_VIRTUAL_DEVICES=KL520 python examples/kp_legacy/generic_inference.py --format RGB565
"""

from __future__ import annotations

import sys

import numpy as np

from _common import open_session, parse_args, print_outputs, run_inferences
from kp_backend import kp

FORMATS = {"RGB565": (kp.ImageFormat.KP_IMAGE_FORMAT_RGB565, 2),
           "RGBA8888": (kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888, 4)}


def main() -> int:
    import argparse

    fmt_parser = argparse.ArgumentParser(add_help=False)
    fmt_parser.add_argument("--format", choices=sorted(FORMATS), default="RGB565")
    fmt_args, rest = fmt_parser.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    args = parse_args(__doc__.splitlines()[0], loops=5)
    image_format, depth = FORMATS[fmt_args.format]

    group, descriptor = open_session(args)
    model = descriptor.models[0]
    header = kp.GenericRawImageHeader(
        model_id=model.id, resize_mode=kp.ResizeMode.KP_RESIZE_ENABLE,
        padding_mode=kp.PaddingMode.KP_PADDING_CORNER,
        normalize_mode=kp.NormalizeMode.KP_NORMALIZE_KNERON, inference_number=0)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, depth), dtype=np.uint8)
    print(f"[inference] {args.loops} x {fmt_args.format} 640x480 on model {model.id}")

    def send(i: int) -> None:
        header.inference_number = i
        kp.inference.generic_raw_inference_send(device_group=group,
                                                generic_raw_image_header=header,
                                                image=image, image_format=image_format)

    result = run_inferences(args.loops, send, lambda: kp.inference.generic_raw_inference_receive(
        device_group=group, generic_raw_image_header=header, model_nef_descriptor=descriptor))
    if result is None:
        return 1
    pre = result.header.hw_pre_proc_info
    print(f"[result] {result.header.num_output_node} output nodes; pre-processing "
          f"{pre.img_width}x{pre.img_height} -> {pre.resized_img_width}x{pre.resized_img_height}, "
          f"pad right {pre.pad_right}, bottom {pre.pad_bottom}")
    print_outputs(result)
    kp.core.disconnect_devices(device_group=group)
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
