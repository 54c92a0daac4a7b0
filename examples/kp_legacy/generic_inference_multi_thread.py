"""One sender thread and one receiver thread on the same device group (our port of Kneron's
legacy ``KL520DemoGenericInferenceMultiThread.py``).

The sender never waits for results; the receiver checks that inference numbers come back
in order. Per-device OUT and IN locks make this the supported way to keep the dongle busy.

    KP_VIRTUAL_DEVICES=KL520 python examples/kp_legacy/generic_inference_multi_thread.py -n 50
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np

from _common import open_session, parse_args
from kp_backend import kp


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], loops=50)
    group, descriptor = open_session(args)
    model = descriptor.models[0]
    image = np.random.default_rng(2).integers(0, 256, (model.height, model.width, 2),
                                               dtype=np.uint8)
    failures: list[str] = []

    def send() -> None:
        header = kp.GenericRawImageHeader(model_id=model.id)
        try:
            for i in range(args.loops):
                header.inference_number = i
                kp.inference.generic_raw_inference_send(
                    device_group=group, generic_raw_image_header=header, image=image,
                    image_format=kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)
        except kp.ApiKPException as exc:
            failures.append(f"send: {exc}")

    def receive() -> None:
        header = kp.GenericRawImageHeader(model_id=model.id)
        try:
            for i in range(args.loops):
                result = kp.inference.generic_raw_inference_receive(
                    device_group=group, generic_raw_image_header=header,
                    model_nef_descriptor=descriptor)
                if result.header.inference_number != i:
                    failures.append(f"receive: expected {i}, got {result.header.inference_number}")
                    return
        except kp.ApiKPException as exc:
            failures.append(f"receive: {exc}")

    start = time.perf_counter()
    threads = [threading.Thread(target=receive), threading.Thread(target=send)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    kp.core.disconnect_devices(device_group=group)
    if failures:
        print("error: " + "; ".join(failures))
        return 1
    print(f"[result] {args.loops} inferences in {elapsed:.2f} s "
          f"({args.loops / elapsed:.1f} FPS), all in order")
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
