"""The ONNX runtime: exported taggers run with onnxruntime and a numpy CRF."""
