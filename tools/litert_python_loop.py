#!/usr/bin/env python3
"""The Python baseline edgewatch's frame rate is compared with: a plain loop over
ai-edge-litert (the same LiteRT release, XNNPACK) on the same frames and model.

Per frame, as a Python user would write it: resize the (preloaded) frame to the model input
with bilinear filtering, set the input, invoke, read the post-process op's outputs and keep
the scores over the threshold. Prints fps and the peak RSS.

    python3 -m pip install ai-edge-litert==2.3.0 pillow
    python3 tools/litert_python_loop.py --model $EDGEWATCH_MODEL_DIR/ssd_mobilenet_v1_coco_quant.tflite \
        --frames $EDGEWATCH_FRAMES_DIR --count 300 --threads 1
"""

import argparse
import glob
import os
import resource
import time

import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--frames", required=True, help="folder with traffic_*.bmp")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--threshold", type=float, default=0.4)
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(args.frames, "traffic_*.bmp")))
    frames = [Image.open(f).convert("RGB") for f in files]
    interp = Interpreter(model_path=args.model, num_threads=args.threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    _, h, w, _ = inp["shape"]

    def step(img):
        x = np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.uint8)[None]
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        boxes, classes, scores, count = (interp.get_tensor(o["index"]) for o in outs)
        n = int(count[0])
        keep = scores[0, :n] >= args.threshold
        return boxes[0, :n][keep], classes[0, :n][keep]

    for i in range(10):
        step(frames[i % len(frames)])
    found = 0
    start = time.perf_counter()
    for i in range(args.count):
        found += len(step(frames[i % len(frames)])[0])
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"python ai-edge-litert, {args.threads} thread(s): {args.count} frames in {wall:.2f} s, "
        f"{args.count / wall:.1f} fps, {found / args.count:.1f} detections/frame, "
        f"peak RSS {rss / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
