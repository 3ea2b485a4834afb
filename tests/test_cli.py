"""CLI subcommands beyond the corpus: tokenizer train, train (fresh, pause, resume), generate's length bounds,
import-checkpoint."""
import json

import torch

import cli


def last_json(out: str) -> dict:
    return json.loads(out[out.index("{"):])


def test_tokenizer_train_and_train_and_resume(tiny_corpus, tmp_path, capsys):
    tok = tmp_path / "tok"
    assert cli.main(["tokenizer", "train", "--corpus", str(tiny_corpus), "--vocab-size", "400", "--out", str(tok)]) == 0
    r = last_json(capsys.readouterr().out)
    assert r["vocab_size"] == 400 and r["validation_round_trip_failures"] == 0
    assert r["seed_recipe"]["round_trip_failures"] >= 0 and "fertility" in r["seed_recipe"]
    run = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--corpus", str(tiny_corpus), "--tokenizer", str(tok), "--out", str(run),
            "--n-ctx", "32", "--batch-size", "2", "--max-steps", "4", "--eval-every", "2", "--eval-tokens", "128"]
    assert cli.main(args + ["--max-steps-this-call", "2"]) == 0
    assert last_json(capsys.readouterr().out)["status"] == "paused"
    assert cli.main(["train", "--resume", str(run)]) == 0
    out = last_json(capsys.readouterr().out)
    assert out["status"] == "completed" and out["step"] == 4
    gen = ["generate", "--model", str(run), "--prompt", "The", "--max-new-tokens", "12", "--temperature", "0"]
    assert cli.main(gen + ["--min-new-tokens", "12"]) == 0
    assert json.loads(capsys.readouterr().err.splitlines()[-1])["generated_tokens"] == 12
    assert cli.main(gen + ["--min-new-tokens", "13"]) == 2
    assert "min_new_tokens=13: must be an integer in [0, max_new_tokens=12]" in capsys.readouterr().err
    assert cli.main(args) == 2  # the folder holds a run already
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["train", "--preset", "huge"]) == 2
    assert "preset='huge' is unknown" in capsys.readouterr().err


def test_import_checkpoint(tmp_path, capsys):
    from nanogpt_reference import GPT, GPTConfig

    ref = GPT(GPTConfig(block_size=16, vocab_size=300, n_layer=1, n_head=2, n_embd=16, dropout=0.0, bias=True))
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": ref.state_dict(), "model_args": dict(n_layer=1, n_head=2, n_embd=16, block_size=16,
                                                             bias=True, vocab_size=300, dropout=0.0)}, ckpt)
    assert cli.main(["import-checkpoint", str(ckpt), "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").exists() and last_json(capsys.readouterr().out)["out"]
    assert cli.main(["import-checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x")]) == 2


def test_check_and_date_one_text_or_jsonl(tmp_path, capsys):
    assert cli.main(["check", "--year", "1550", "--text", "She watched television in the year 1550."]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [f["word"] for f in found] == ["television"]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": "The internet, and the heart.", "year": 1600}) + "\n")
    assert cli.main(["check", "--jsonl", str(src), "--out", str(tmp_path / "out.jsonl")]) == 0
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["id"] == "a" and [f["word"] for f in row["findings"]] == ["internet"]
    assert cli.main(["check", "--text", "x"]) == 2 and "needs --year" in capsys.readouterr().err
    assert cli.main(["check", "--jsonl", str(src)]) == 2 and "needs --out OUT" in capsys.readouterr().err
    assert cli.main(["date"]) == 2 and "needs --text" in capsys.readouterr().err


def test_first_check_and_date_say_what_they_build(capsys):
    assert cli.main(["check", "--year", "1600", "--text", "A telegram."]) == 0
    err = capsys.readouterr().err
    assert "check: loading the dated lexicon ...\n" in err and "check: loading the dated lexicon: ready in" in err
    assert cli.main(["check", "--text", "x"]) == 2  # bad input: the error, and no table build before it
    assert "loading" not in capsys.readouterr().err
