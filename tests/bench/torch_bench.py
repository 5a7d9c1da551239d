#!/usr/bin/env python3
"""torch_bench.py - the PyTorch side of attn_bench: times one case per request, driven over stdin.

attn_bench starts this script once and interleaves its rows with the engine's: it sends
  setup NAME mha N E H WEIGHTS   (nn.MultiheadAttention self-attention, batch_first, 1 x N x E,
                                  need_weights=WEIGHTS, average_attn_weights=False)
  setup NAME sdpa N D            (single head, scaled dot product, output only)
  run NAME [K]                   (K timed calls, default 1; answers "ms <mean milliseconds>")
  quit
and reads one answer line per command ("ok", "ms <t>" or "error <text>"). Only the call
itself is timed (time.perf_counter around the calls), under torch.inference_mode(), after two
warm-up calls at setup. --threads sets torch.set_num_threads (attn_bench passes its own
BLAS thread count).
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    try:
        import torch
    except ImportError as exc:  # the bench profile of docker/install-deps.sh installs it
        print(f"error python3-torch is not installed ({exc})", flush=True)
        return 1
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(0)
    F = torch.nn.functional
    cases = {}
    print(f"ready torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)

    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd = parts[0]
        try:
            if cmd == "quit":
                break
            if cmd == "setup":
                name, kind = parts[1], parts[2]
                if kind == "mha":
                    n, E, H, w = (int(x) for x in parts[3:7])
                    mha = torch.nn.MultiheadAttention(E, H, batch_first=True).eval()
                    x = torch.rand(1, n, E) * 2 - 1

                    def fn(mha=mha, x=x, w=bool(w)):
                        return mha(x, x, x, need_weights=w, average_attn_weights=False)

                elif kind == "sdpa":
                    n, d = int(parts[3]), int(parts[4])
                    q, k, v = (torch.rand(1, n, d) * 2 - 1 for _ in range(3))
                    sdpa = getattr(F, "scaled_dot_product_attention", None)
                    if sdpa is None:  # torch 1.13 (Debian 12): the private one, (out, weights)
                        priv = F._scaled_dot_product_attention

                        def sdpa(q, k, v, priv=priv):
                            return priv(q, k, v)[0]

                    def fn(q=q, k=k, v=v, sdpa=sdpa):
                        return sdpa(q, k, v)

                else:
                    raise ValueError(f"unknown kind {kind}")
                with torch.inference_mode():
                    fn()
                    fn()
                cases[name] = fn
                print("ok", flush=True)
            elif cmd == "run":
                fn = cases[parts[1]]
                calls = int(parts[2]) if len(parts) > 2 else 1
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        out = fn()
                    t1 = time.perf_counter()
                del out
                print(f"ms {(t1 - t0) * 1e3 / calls:.6f}", flush=True)
            else:
                raise ValueError(f"unknown command {cmd}")
        except Exception as exc:  # report and go on: one bad row must not stop the table
            print(f"error {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
