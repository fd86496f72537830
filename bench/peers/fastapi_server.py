#!/usr/bin/python3
"""The peer of the benchmark: the FastAPI + uvicorn + PyTorch server a user would otherwise write.

Same TorchScript files, same LibTorch build (Debian python3-torch 1.13), torchvision preprocessing,
one process, no batching (the usual hand-written server). Routes mirror torchd's so the same load
generator drives both:
    POST /predictions/{model}      raw image bytes (JPEG/PNG) → top-5 {label: prob} or argmax int
    GET  /ping                     {"status": "Healthy"}

    /usr/bin/python3 bench/peers/fastapi_server.py --port 8090 --threads 2 \
        --model resnet18=path/resnet18.pt:imagenet --model mnist=path/mnist.pt:mnist [--optimize]

--optimize makes it the "tuned peer": each model is served as
torch.jit.optimize_for_inference(torch.jit.freeze(m)), the graph optimisation a careful author would add, so
the report can separate torchd's lead from graph optimisation from its lead in preprocessing, batching and HTTP.
"""
import argparse
import io

import torch
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from PIL import Image
from torchvision import transforms

PRESETS = {
    "imagenet": transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]),
    "mnist": transforms.Compose([
        transforms.Grayscale(1),
        transforms.ToTensor(),
        transforms.Normalize([0.1307], [0.3081]),
    ]),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    ap.add_argument("--model", action="append", default=[], help="NAME=FILE.pt:PRESET")
    ap.add_argument("--optimize", action="store_true", help="serve optimize_for_inference(freeze(m))")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    models = {}
    for item in args.model:
        name, rest = item.split("=", 1)
        path, preset = rest.rsplit(":", 1)
        m = torch.jit.load(path, map_location="cpu").eval()
        if args.optimize:
            m = torch.jit.optimize_for_inference(torch.jit.freeze(m))
        models[name] = (m, preset)

    app = FastAPI()

    @app.get("/ping")
    def ping():
        return {"status": "Healthy"}

    # The raw body is read on the event loop; decode + forward run on Starlette's threadpool, as a
    # careful hand-written server would do, so the loop keeps accepting connections.
    @app.post("/predictions/{name}")
    async def predict_raw(name: str, request: Request):
        if name not in models:
            raise HTTPException(404, f"Model not found: {name}")
        data = await request.body()
        model, preset = models[name]
        return JSONResponse(await run_in_threadpool(infer, model, preset, data))

    def infer(model, preset, data):
        img = Image.open(io.BytesIO(data)).convert("L" if preset == "mnist" else "RGB")
        x = PRESETS[preset](img).unsqueeze(0)
        with torch.inference_mode():
            logits = model(x)
        if preset == "mnist":
            return int(logits.argmax(1).item())
        p = torch.softmax(logits[0], 0)
        top = torch.topk(p, 5)
        return {str(int(i)): float(v) for v, i in zip(top.values, top.indices)}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
