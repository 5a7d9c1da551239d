#!/usr/bin/env python3
"""flask_server.py - the alternative a user would write: Flask + PyTorch serving POST /v1/attention.

attn_bench runs it under wrk next to attention-server. It does the same work as the service's
default answer: read query, key and value as nested lists, compute one head of scaled dot
product attention in float32, and answer {"output": [[...]], "weights": [[...]]}.
Served by Werkzeug's threaded server (what app.run(threaded=True) uses), on 127.0.0.1 and the
port given (0: any free port); prints "listening on http://127.0.0.1:PORT" once it accepts.
"""
import argparse
import math
import sys

import torch
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

app = Flask(__name__)


@app.post("/v1/attention")
def attention():
    body = request.get_json(force=True)
    with torch.inference_mode():
        q = torch.tensor(body["query"], dtype=torch.float32)
        k = torch.tensor(body["key"], dtype=torch.float32)
        v = torch.tensor(body["value"], dtype=torch.float32)
        w = torch.softmax(q @ k.T / math.sqrt(q.shape[-1]), dim=-1)
        out = w @ v
    return jsonify({"output": out.tolist(), "weights": w.tolist()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = ap.parse_args()
    torch.set_num_threads(max(1, args.threads))
    srv = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"listening on http://127.0.0.1:{srv.server_port}", flush=True)
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
