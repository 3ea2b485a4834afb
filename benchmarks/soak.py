"""Soak: many users for minutes against the real app, then the crash harness and the fuzzer, in one JSON line.

    python benchmarks/soak.py [--model runs/tiny] [--corpus data/corpus] [--clients 8] [--seconds 120] [--quick]

1. The app (`python app.py`, benchmarks/app_launch.py) on a free 127.0.0.1 port, its jobs in a folder of its own.
   One quantize job is started so that "job status" polls watch a real job.
2. Solo: each client, alone with the server, records its references: a greedy /generate per prompt, a seeded
   /compare (it has no temperature: seeded sampling is as deterministic) and a /check of its text.
3. Soak: `--clients` gradio_client clients at once, each cycling generate (streamed: time to the first
   non-empty chunk) / compare / check / job status until the deadline; every generate, compare and check answer
   must equal that client's solo one (crosstalk_mismatches counts those that do not); any exception is an error.
   The server's RSS (psutil) is sampled after warm-up, every 5 s, and at the end.
4. tests/reliability/fuzz_targets.run_fuzz against the same app, then tests/reliability/crash_harness
   .run_crash_harness (SIGKILLed training, resumed, compared bit for bit), each when its module is present.

Prints progress lines to stderr and one JSON line last on stdout with kills_survived, fuzz_cases,
unhandled_exceptions, clients, errors, crosstalk_mismatches, rss_growth_mb, ttft_p50_ms, ttft_p95_ms (null where
a part did not run), and what was used. `--quick`: a 20 s soak, 200 fuzz cases, 2 kills."""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.app_launch import ROOT, running_app  # noqa: E402

PROMPTS = ["It was in the yeare of the great fire, that", "Upon the Thames this morning I beheld",
           "The coffee-house was full of talk of", "My dear sister, I write to tell you that",
           "In the citie of London there dwelt", "The merchant sayd unto his servant",
           "At the sign of the Bell in Cheapside", "The sermon at Paules crosse was upon",
           "The Lord Mayor rode to Westminster and", "Of the plague in this citie I have heard",
           "The booksellers of Paules churchyard", "A true relation of the fire at"]
OPS = ("generate", "compare", "check", "job_status")


def log(msg: str) -> None:
    print(f"soak: {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def random_tiny(out: Path, tokenizer: str) -> str:
    """A random-init tiny model (4x128) saved as a model folder: for a soak where no demo model is trained."""
    import torch

    from engine.checkpoint import save_hf_model
    from engine.model import build_model, model_config
    from engine.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    torch.manual_seed(0)
    model = build_model(model_config("tiny", len(tok), n_ctx=256), 0, 0, 0)
    files = [p for p in Path(tokenizer).iterdir() if p.is_file() and p.name != "tokenizer_report.json"]
    return str(save_hf_model(model, out / "random-tiny", extra_files=files))


class User:
    """One client: its prompts, years, solo references and what it saw during the soak."""

    def __init__(self, i: int, url: str, tokens: int, job_id: str | None):
        from gradio_client import Client

        self.i, self.tokens, self.job_id = i, tokens, job_id
        self.client = Client(url, verbose=False, analytics_enabled=False)
        self.prompts = [PROMPTS[(2 * i) % len(PROMPTS)], PROMPTS[(2 * i + 1) % len(PROMPTS)]]
        self.years = [1550 + 37 * i % 300, 1600 + 41 * i % 250]
        self.solo: dict = {}
        self.ttft: list[float] = []
        self.errors: list[str] = []
        self.mismatches: list[str] = []
        self.calls = dict.fromkeys(OPS, 0)

    def generate(self, k: int) -> str:
        t, first = time.perf_counter(), None
        job = self.client.submit(prompt=self.prompts[k], year=self.years[k], max_new_tokens=self.tokens,
                                 temperature=0, api_name="/generate")
        text = ""
        for text in job:
            if first is None and text:
                first = time.perf_counter() - t
        if first is not None:
            self.ttft.append(first)
        return job.outputs()[-1] if job.outputs() else text

    def compare(self, k: int) -> list[str]:
        cols = self.client.predict(prompt=self.prompts[k], years=self.years, lock=[False, True], seed=self.i,
                                   max_new_tokens=self.tokens, api_name="/compare")
        return [c["text"] for c in cols]

    def check(self, k: int) -> list:
        text = self.prompts[k] + self.solo[("generate", k)]  # never empty, even if the model stopped at once
        r = self.client.predict(text=text, year=self.years[k], api_name="/check")
        return [(f["start"], f["end"], f["word"], f["year"]) for f in r["findings"]]

    def job_status(self) -> str:
        jobs = self.client.predict(api_name="/jobs")
        if self.job_id is None:
            return "none"
        s = self.client.predict(job_id=self.job_id, api_name="/job_status")
        if s["id"] != self.job_id or self.job_id not in {j["id"] for j in jobs}:
            raise AssertionError(f"job_status answered for {s['id']}, not {self.job_id}")
        return s["state"]

    def record_solo(self) -> None:
        for k in range(len(self.prompts)):
            self.solo[("generate", k)] = self.generate(k)
            self.solo[("compare", k)] = self.compare(k)
            self.solo[("check", k)] = self.check(k)
        self.ttft.clear()  # solo timings are not the soak's

    def step(self, n: int) -> None:
        op, k = OPS[n % len(OPS)], (n // len(OPS)) % len(self.prompts)
        self.calls[op] += 1
        try:
            got = self.job_status() if op == "job_status" else getattr(self, op)(k)
        except Exception as e:  # noqa: BLE001  (every failure is counted and the first ones are shown)
            self.errors.append(f"client {self.i} {op}: {type(e).__name__}: {str(e)[:200]}")
            return
        if op != "job_status" and got != self.solo[(op, k)]:
            self.mismatches.append(f"client {self.i} {op} prompt {k}: {str(got)[:80]!r} != solo "
                                   f"{str(self.solo[(op, k)])[:80]!r}")

    def run_until(self, deadline: float) -> None:
        n = self.i  # clients start at different operations, so every mix happens from the first second
        while time.monotonic() < deadline:
            self.step(n)
            n += 1


def soak(url: str, server_pid: int, n_clients: int, seconds: float, tokens: int, job_id: str | None) -> dict:
    import psutil

    proc = psutil.Process(server_pid)
    users = [User(i, url, tokens, job_id) for i in range(n_clients)]
    t0 = time.monotonic()
    for u in users:  # one after another: each reference is what the client gets alone
        u.record_solo()
    log(f"solo references of {n_clients} clients recorded in {time.monotonic() - t0:.1f} s")
    warm = [threading.Thread(target=u.step, args=(u.i,)) for u in users]  # one concurrent round: warm-up
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    rss = [proc.memory_info().rss]
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=u.run_until, args=(deadline,), name=f"soak-client-{u.i}") for u in users]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())) if time.monotonic() < deadline else 0.5)
        rss.append(proc.memory_info().rss)
    for t in threads:
        t.join()
    rss.append(proc.memory_info().rss)
    ttft = [x for u in users for x in u.ttft]
    errors = [e for u in users for e in u.errors]
    mism = [m for u in users for m in u.mismatches]
    calls = {op: sum(u.calls[op] for u in users) for op in OPS}
    for line in (errors[:5] + mism[:5]):
        log(line)
    return {"clients": n_clients, "seconds": seconds, "calls": calls, "errors": len(errors),
            "crosstalk_mismatches": len(mism), "rss_start_mb": round(rss[0] / 2**20, 1),
            "rss_end_mb": round(rss[-1] / 2**20, 1), "rss_max_mb": round(max(rss) / 2**20, 1),
            "rss_growth_mb": round((rss[-1] - rss[0]) / 2**20, 1), "rss_mb_every_5s": [round(r / 2**20) for r in rss],
            "ttft_p50_ms": round(1000 * statistics.median(ttft), 1) if ttft else None,
            "ttft_p95_ms": round(1000 * pct(ttft, 0.95), 1) if ttft else None, "ttft_samples": len(ttft),
            "first_errors": errors[:3], "first_mismatches": mism[:3]}


def reliability_module(name: str):
    """The module tests/reliability/<name>.py (tests/ is not a package), or None when the file is absent."""
    path = ROOT / "tests" / "reliability" / f"{name}.py"
    if not path.is_file():
        log(f"{path.relative_to(ROOT)} is not there: that part is skipped (null in the JSON)")
        return None
    for d in (path.parent.parent, path.parent):  # as pytest sees them: tests/ and tests/reliability/ on sys.path
        if str(d) not in sys.path:
            sys.path.insert(0, str(d))
    return importlib.import_module(name)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="run or model folder (default runs/tiny, else a random-init "
                                                  "tiny model on --tokenizer)")
    ap.add_argument("--tokenizer", default="runs/tok8k", help="for the random-init model only")
    ap.add_argument("--corpus", default=None, help="built corpus (default data/corpus when built; '' = none)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per generate/compare")
    ap.add_argument("--fuzz-cases", type=int, default=10_000, help="0 = no fuzzing")
    ap.add_argument("--kills", type=int, default=5, help="crash harness SIGKILLs; 0 = no crash harness")
    ap.add_argument("--quick", action="store_true", help="20 s soak, 200 fuzz cases, 2 kills")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder, removed)")
    a = ap.parse_args(argv)
    if a.quick:
        a.seconds, a.fuzz_cases, a.kills = min(a.seconds, 20.0), min(a.fuzz_cases, 200), min(a.kills, 2)
    for name, lo in (("clients", 1), ("tokens", 1), ("seconds", 1), ("fuzz_cases", 0), ("kills", 0)):
        if getattr(a, name) < lo:
            sys.exit(f"--{name.replace('_', '-')}={getattr(a, name)}: must be >= {lo}")
    tmp = tempfile.TemporaryDirectory(prefix="anno-soak-") if a.work is None else None
    work = Path(a.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    model = a.model or ("runs/tiny" if (ROOT / "runs/tiny/run.json").is_file() else None)
    if model is None:
        if not (ROOT / a.tokenizer / "tokenizer.json").is_file():
            sys.exit(f"no --model, no runs/tiny and no tokenizer at --tokenizer {a.tokenizer}: run `make demo`")
        model = random_tiny(work, a.tokenizer)
    corpus = a.corpus if a.corpus is not None else ("data/corpus" if (ROOT / "data/corpus/report.json").is_file()
                                                     else "")
    out = {"kills_survived": None, "fuzz_cases": None, "unhandled_exceptions": None, "clients": a.clients,
           "errors": None, "crosstalk_mismatches": None, "rss_growth_mb": None, "ttft_p50_ms": None,
           "ttft_p95_ms": None, "model": model, "corpus": corpus or None, "quick": a.quick}
    t0 = time.time()
    env = {"ANNO_JOBS_DIR": str(work / "jobs"), "ANNO_ALLOWED_ROOTS": str(work)}
    with running_app(model, corpus, env=env, log=work / "server.log") as (server, url):
        log(f"app up at {url} (model {model}, corpus {corpus or 'none'}) in {time.time() - t0:.1f} s")
        from gradio_client import Client

        c = Client(url, verbose=False, analytics_enabled=False)
        try:  # a real job for the status polls: int8 quantization of the model, no perplexity evaluation
            job_id = c.predict(model=model, method="int8-cpu", out=str(work / "quantized"), eval_docs=0,
                               api_name="/quantize")["id"]
        except Exception as e:  # noqa: BLE001
            log(f"could not start the quantize job ({e}): job status polls read /jobs only")
            job_id = None
        s = soak(url, server.pid, a.clients, a.seconds, a.tokens, job_id)
        out.update({k: s[k] for k in ("errors", "crosstalk_mismatches", "rss_growth_mb", "ttft_p50_ms",
                                      "ttft_p95_ms")}, soak=s)
        log(json.dumps(s))
        if a.fuzz_cases and (fz := reliability_module("fuzz_targets")) is not None:
            t = time.time()
            r = fz.run_fuzz(a.fuzz_cases, seed=0, app_url=url)
            out.update(fuzz_cases=r["fuzz_cases"], unhandled_exceptions=r["unhandled_exceptions"],
                       fuzz={k: r.get(k) for k in ("rejections", "app_alive")} | {"seconds": round(time.time() - t)})
            out["fuzz"]["app_alive_after"] = server.poll() is None
            log(f"fuzz: {json.dumps(out['fuzz'])}")
    if a.kills and (ch := reliability_module("crash_harness")) is not None:
        t = time.time()
        r = ch.run_crash_harness(work / "crash", kills=a.kills, seed=0)
        out.update(kills_survived=r["kills_survived"],
                   crash={k: r.get(k) for k in ("identical", "kills_during_checkpoint", "max_abs_diff")}
                   | {"seconds": round(time.time() - t)})
    out["seconds"] = round(time.time() - t0, 1)
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
