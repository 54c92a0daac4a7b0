"""A third-party kp_runtime provider: runs ONNX models with onnxruntime."""
import importlib.util

from kp_runtime import NodeArg, hookimpl
from kp_runtime.provider import Availability, ExecutionProvider, ProviderSession


class OrtSession(ProviderSession):
    def __init__(self, model, options):
        import onnxruntime
        self._sess = onnxruntime.InferenceSession(model.data, providers=["CPUExecutionProvider"])
        self.inputs = [NodeArg(a.name, a.type, a.shape) for a in self._sess.get_inputs()]
        self.outputs = [NodeArg(a.name, a.type, a.shape) for a in self._sess.get_outputs()]

    def run(self, output_names, feeds, run_options=None):
        return self._sess.run(output_names, feeds)


class OrtProvider(ExecutionProvider):
    name, aliases, priority, model_formats = "OrtExecutionProvider", ("ort",), 10, ("onnx",)

    def is_available(self):
        found = importlib.util.find_spec("onnxruntime") is not None
        return Availability(found, "" if found else "onnxruntime is not installed")

    def create_session(self, model, options, session_options):
        return OrtSession(model, options)


@hookimpl
def kp_runtime_providers():
    return [OrtProvider()]
