"""Helpers shared by the legacy-example ports: arguments, device selection, demo model.

Run any example on the virtual dongle with one environment variable, e.g.
``KP_VIRTUAL_DEVICES=KL520 python examples/kp_legacy/generic_inference.py``.
"""

from __future__ import annotations

import argparse
import sys

from kp_backend import kp

DEMO_MODEL_ID = 19


def parse_args(description: str, loops: int = 10) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("-p", "--port_id", type=int, default=0,
                        help="USB port id of the dongle (0 = the first one found)")
    parser.add_argument("-m", "--model", default=None,
                        help="NEF file (default: a small demo NEF built for the dongle's chip)")
    parser.add_argument("--scpu", default=None, help="KL520 SCPU firmware (USB-boot dongles)")
    parser.add_argument("--ncpu", default=None, help="KL520 NCPU firmware (USB-boot dongles)")
    parser.add_argument("-n", "--loops", type=int, default=loops, help="number of inferences")
    return parser.parse_args()


def demo_nef(product_id: int) -> bytes:
    """A one-model NEF (id 19: 224x224x3 input, 1000-class output) for the dongle's chip."""
    from kp_backend.nef import build_simple_nef

    chip = "KL720" if product_id == kp.ProductId.KP_DEVICE_KL720 else "KL520"
    return build_simple_nef(chip, [{
        "id": DEMO_MODEL_ID,
        "inputs": [{"shape": [1, 3, 224, 224], "layout": "4W4C8B", "radix": 8, "scale": 1.0}],
        "outputs": [{"shape": [1, 1000, 1, 1], "layout": "16W1C8B", "radix": 2, "scale": 1.5}],
    }])


def connect(args: argparse.Namespace) -> kp.DeviceGroup:
    """Scan, connect, set a 5 s timeout and (KL520 USB-boot) upload firmware."""
    devices = kp.core.scan_devices()
    if devices.device_descriptor_number == 0:
        sys.exit("error: no Kneron device found (set KP_VIRTUAL_DEVICES=KL520 for a virtual one)")
    chosen = next((d for d in devices.device_descriptor_list
                   if args.port_id in (0, d.usb_port_id)), None)
    if chosen is None:
        sys.exit(f"error: no device at usb port id {args.port_id}")
    print(f"[connect] port {chosen.usb_port_id} ({chosen.usb_port_path}), product id "
          f"0x{chosen.product_id:X}, firmware {chosen.firmware}")
    group = kp.core.connect_devices(usb_port_ids=[chosen.usb_port_id])
    kp.core.set_timeout(device_group=group, milliseconds=5000)
    if chosen.firmware == "KDP2 Loader":
        if not (args.scpu and args.ncpu):
            sys.exit("error: this KL520 runs its loader; pass --scpu and --ncpu firmware files")
        print("[upload firmware]")
        kp.core.load_firmware_from_file(group, args.scpu, args.ncpu)
    return group


def load_model(group: kp.DeviceGroup, args: argparse.Namespace) -> kp.ModelNefDescriptor:
    if args.model:
        descriptor = kp.core.load_model_from_file(device_group=group, file_path=args.model)
    else:
        descriptor = kp.core.load_model(device_group=group,
                                        nef_buffer=demo_nef(group.content.product_id))
    print(f"[upload model] ids {[m.id for m in descriptor.models]}")
    return descriptor


def open_session(args: argparse.Namespace) -> tuple[kp.DeviceGroup, kp.ModelNefDescriptor]:
    """Connect and load the model; exit with the error text on failure."""
    try:
        group = connect(args)
        return group, load_model(group, args)
    except kp.ApiKPException as exc:
        sys.exit(f"error: {exc}")


def run_inferences(loops: int, send, receive):
    """``send(i)`` then ``receive()`` for each inference number; the last result, or
    ``None`` after printing what went wrong."""
    result = None
    try:
        for i in range(loops):
            send(i)
            result = receive()
            if result.header.inference_number != i:
                print(f"error: expected inference number {i}, got "
                      f"{result.header.inference_number}")
                return None
    except kp.ApiKPException as exc:
        print(f"error: {exc}")
        return None
    return result


def print_outputs(result, ordering=kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW) -> None:
    for i in range(result.header.num_output_node):
        node = kp.inference.generic_inference_retrieve_float_node(
            node_idx=i, generic_raw_result=result, channels_ordering=ordering)
        flat = node.ndarray.ravel()
        first = [round(float(v), 4) for v in flat[:4]]
        print(f"  node {i}: shape {node.ndarray.shape}, first values {first}")
