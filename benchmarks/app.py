"""Web-app serving benchmark: time to the first streamed chunk through gradio_client vs the engine's own stream
(target: app <= engine + 100 ms), and the aggregate tokens/s of 1, 4 and 8 concurrent API clients (target: 4
clients >= 2x one client on the demo model). The app is the real one (app.build_app) on a free 127.0.0.1 port.

    python benchmarks/app.py [--model runs/tiny] [--corpus data/corpus] [--tokens 96] [--rounds 3] [--seconds 10]

Time to first chunk is measured three ways, alternated: the engine's own `stream`, gradio_client, and plain
HTTP against Gradio's queue (join + SSE), which shows how much of the overhead is the server's. Throughput is
sustained: each client sends requests back to back for --seconds, so one request's fixed queue and transfer
cost overlaps the others' decoding as it does for real users.
Prints one JSON line per measurement and a last line with `ratios`. Tokens are counted by re-encoding each
client's final text with the model's tokenizer (what the client sees), so a stream that ends early at
<|endoftext|> counts what it really produced."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = ["It was in the yeare of the great fire, that", "Upon the Thames this morning I beheld",
           "The coffee-house was full of talk of", "My dear sister, I write to tell you that",
           "In the citie of London there dwelt", "The merchant sayd unto his servant",
           "At the sign of the Bell in Cheapside", "The sermon at Paules crosse was upon"]


def engine_ttft(loaded, prompt: str, tokens: int) -> float:
    from engine.generate import GenerationConfig, stream

    cfg = GenerationConfig(max_new_tokens=tokens, temperature=0, year=1666)
    t = time.perf_counter()
    it = stream(loaded.model, loaded.tokenizer, prompt, cfg)
    next(it)
    first = time.perf_counter() - t
    it.close()
    return first


def api_ttft(client, prompt: str, tokens: int) -> float:
    t = time.perf_counter()
    job = client.submit(prompt=prompt, year=1666, max_new_tokens=tokens, temperature=0, api_name="/generate")
    for out in job:
        if out:  # the first non-empty chunk: the first generated text, as a user sees it
            first = time.perf_counter() - t
            job.cancel()
            return first
    return time.perf_counter() - t


def raw_ttft(url: str, prompt: str, tokens: int) -> float:
    """The same first chunk read straight off Gradio's queue over HTTP (join, then the SSE stream), without
    gradio_client: separates the server's share of the overhead from the client library's (it polls its
    message queue every 50 ms: gradio_client/utils.py stream_sse_v1plus)."""
    import uuid

    import httpx

    with httpx.Client(timeout=60) as h:  # built before the clock starts (its TLS context costs ~50 ms here)
        cfg = h.get(url + "config").json()
        fn = next(d["id"] for d in cfg["dependencies"] if d.get("api_name") == "generate")
        session = uuid.uuid4().hex[:11]
        # a new session, as a new API user is: Gradio builds its per-session state (SessionState: every block's
        # config, ~30 ms for this app) at the first join of a session; gradio_client pays it once per Client
        body = {"data": [prompt, 1666, None, tokens, 0, 50, 0.95, None, None], "fn_index": fn,
                "session_hash": session, "event_data": None, "trigger_id": None}
        t = time.perf_counter()
        h.post(url + "gradio_api/queue/join", json=body).raise_for_status()
        with h.stream("GET", url + "gradio_api/queue/data", params={"session_hash": session}) as s:
            for line in s.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_generating":
                    return time.perf_counter() - t
    raise RuntimeError("the stream ended without a generated chunk")


def clients_throughput(url: str, tok, n: int, tokens: int, seconds: float) -> dict:
    """n clients, each sending requests back to back for `seconds` (sustained load: a request's fixed queue and
    transfer cost overlaps the others' decoding, as it does for real users); tokens of completed requests over
    the time from the start to the last completion."""
    from benchmarks.app_launch import api_client

    clients = [api_client(url) for _ in range(n)]
    t = time.perf_counter()
    deadline = t + seconds

    def one(i):
        count, k, last = 0, 0, t
        while time.perf_counter() < deadline:
            text = clients[i].predict(prompt=PROMPTS[(i + k) % len(PROMPTS)], year=1600 + 30 * i,
                                      max_new_tokens=tokens, temperature=0.8, seed=i + 100 * k, api_name="/generate")
            count, k, last = count + len(tok(text, add_special_tokens=False)["input_ids"]), k + 1, time.perf_counter()
        return count, k, last

    with ThreadPoolExecutor(n) as ex:
        done = list(ex.map(one, range(n)))
    secs = max(last for _, _, last in done) - t
    total = sum(c for c, _, _ in done)
    return {"clients": n, "requests": sum(k for _, k, _ in done), "tokens": total, "seconds": round(secs, 3),
            "tok_s": round(total / secs, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="runs/tiny")
    ap.add_argument("--corpus", default="data/corpus", help="'' for none (only /generate is measured)")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0, help="sustained load per client-count measurement")
    ap.add_argument("--threads", type=int, default=None, help="the server's --threads (default: app.py's default)")
    a = ap.parse_args()
    if not Path(a.model).exists():
        sys.exit(f"--model {a.model}: not found; train the demo model with `make demo` or pass --model")
    from benchmarks.app_launch import api_client, running_app
    from engine import serving

    # The compiled decode step's packages (small models; app.py would build them in the background while
    # serving): built first, for the server's thread count and this process's, so the steady state is measured.
    for threads in dict.fromkeys([a.threads, None]):
        subprocess.run([sys.executable, "cli.py", "compile-step", "--model", a.model,
                        *(() if threads is None else ("--threads", str(threads)))],
                       cwd=Path(__file__).resolve().parents[1], check=True, stdout=subprocess.DEVNULL)
    with running_app(a.model, a.corpus, args=() if a.threads is None else ("--threads", str(a.threads))) as (_, url):
        measure(a, url, serving.load_model(a.model), api_client(url), api_client(url, reuse_tls=False))


def measure(a, url: str, loaded, client, default_client) -> None:
    """client: gradio_client with one TLS context reused (the README's advice); default_client: as constructed
    by default (a new TLS context per request)."""
    api_ttft(client, PROMPTS[0], 4)  # warm: model, queue, event stream
    api_ttft(default_client, PROMPTS[0], 4)
    eng, api, dflt, raw = [], [], [], []
    for r in range(a.rounds):  # alternated, so load from elsewhere hits all alike
        for p in PROMPTS[:4]:
            eng.append(engine_ttft(loaded, p, a.tokens))
            api.append(api_ttft(client, p, a.tokens))
            dflt.append(api_ttft(default_client, p, a.tokens))
            raw.append(raw_ttft(url, p, a.tokens))
    ttft = {"bench": "ttft", "engine_ms_p50": round(1000 * statistics.median(eng), 1),
            "api_ms_p50": round(1000 * statistics.median(api), 1),
            "api_default_client_ms_p50": round(1000 * statistics.median(dflt), 1),
            "http_ms_p50": round(1000 * statistics.median(raw), 1), "samples": len(api)}
    for k in ("api", "api_default_client", "http"):
        ttft[f"{k}_overhead_ms"] = round(ttft[f"{k}_ms_p50"] - ttft["engine_ms_p50"], 1)
    print(json.dumps(ttft), flush=True)
    runs = {}
    for r in range(a.rounds):
        for n in (1, 4, 8):
            res = clients_throughput(url, loaded.tokenizer, n, a.tokens, a.seconds)
            runs.setdefault(n, []).append(res["tok_s"])
            print(json.dumps({"bench": "clients", "round": r, **res}), flush=True)
    med = {n: statistics.median(v) for n, v in runs.items()}
    print(json.dumps({"bench": "app", "model": a.model, "tokens": a.tokens, "rounds": a.rounds,
                      "server_threads": a.threads, "tok_s_median": {str(k): v for k, v in med.items()},
                      "ratios": {"c4_vs_c1": round(med[4] / med[1], 2), "c8_vs_c1": round(med[8] / med[1], 2),
                                 "api_ttft_overhead_ms": ttft["api_overhead_ms"],
                                 "api_default_client_ttft_overhead_ms": ttft["api_default_client_overhead_ms"],
                                 "http_ttft_overhead_ms": ttft["http_overhead_ms"]},
                      "targets": {"c4_vs_c1": ">= 2", "api_ttft_overhead_ms": "<= 100"}}))


if __name__ == "__main__":
    main()
