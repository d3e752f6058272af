"""The ONNX backend: exported taggers and classifiers run with onnxruntime and a numpy CRF.

A model implementation beside `nn/`: `serialize.load_model` builds one from an export folder;
the exporter (torch) is `integrations.runtime`.
"""
