"""ONNX export: the torch model as one ONNX graph; `bilstm_nlp.runtime` runs it."""
