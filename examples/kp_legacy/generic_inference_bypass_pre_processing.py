"""Generic raw inference without device pre-processing (our port of Kneron's legacy
``KL520DemoGenericInferenceBypassPreProcessing.py``).

The host prepares the model input itself: the image is normalised, quantised with the
input node's radix/scale and laid out in the NPU input layout (``kp_backend.layouts``),
then sent with ``image_buffer_size`` bytes.

    KP_VIRTUAL_DEVICES=KL520 python examples/kp_legacy/generic_inference_bypass_pre_processing.py
"""

from __future__ import annotations

import sys

import numpy as np

from _common import open_session, parse_args, print_outputs, run_inferences
from kp_backend import kp
from kp_backend.layouts import image_to_npu


def npu_input(model: kp.SingleModelDescriptor, chip: int, image: np.ndarray) -> bytes:
    node = model.input_nodes[0]
    quant = node.quantization_parameters.quantized_fixed_point_descriptor_list[0]
    return image_to_npu(image, chip=chip, layout=int(node.data_layout), shape=node.shape_npu,
                        radix=quant.radix, scale=quant.scale, normalize="KNERON")


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], loops=5)
    group, descriptor = open_session(args)
    model = descriptor.models[0]
    image = np.random.default_rng(1).integers(0, 256, (model.height, model.width, 3),
                                               dtype=np.uint8)
    data = npu_input(model, int(descriptor.target_chip), image)
    header = kp.GenericRawBypassPreProcImageHeader(model_id=model.id, inference_number=0,
                                                   image_buffer_size=len(data))
    print(f"[inference] {args.loops} x {len(data)} bytes of NPU input on model {model.id}")

    def send(i: int) -> None:
        header.inference_number = i
        kp.inference.generic_raw_inference_bypass_pre_proc_send(
            device_group=group, generic_raw_image_header=header, image_buffer=data)

    result = run_inferences(
        args.loops, send, lambda: kp.inference.generic_raw_inference_bypass_pre_proc_receive(
            device_group=group, generic_raw_image_header=header, model_nef_descriptor=descriptor))
    if result is None:
        return 1
    print(f"[result] {result.header.num_output_node} output nodes")
    print_outputs(result)
    kp.core.disconnect_devices(device_group=group)
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
