"""A full disk (ENOSPC, simulated: the real write runs, then the disk "fills up") during a JSON record, a corpus
build or an export leaves the earlier artifact byte for byte as it was, leaves no temp folder, and says so:
DiskFullError (engine/atomic.py) names the target and what was kept. The checkpoint case is
tests/test_jobs.py::test_full_disk_during_a_checkpoint_fails_the_job_and_keeps_the_last_checkpoint."""
import errno
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from engine import atomic
from engine.atomic import DiskFullError, write_json_atomic


def tree_digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def enospc():
    return OSError(errno.ENOSPC, "No space left on device")


def test_json_record(tmp_path, monkeypatch):
    path = tmp_path / "run.json"
    write_json_atomic(path, {"status": "running", "step": 4})
    before = path.read_bytes()

    def half_then_full(obj, f, **kw):
        f.write(json.dumps(obj)[:5])
        raise enospc()

    monkeypatch.setattr(atomic.json, "dump", half_then_full)
    with pytest.raises(DiskFullError) as e:
        write_json_atomic(path, {"status": "completed", "step": 8})
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == (f"the disk is full (no space left on device) while writing {path}: the partial write was "
                            f"removed and the earlier {path} is kept as it was; free some space and run it again")
    assert path.read_bytes() == before and leftovers(tmp_path) == []
    with pytest.raises(DiskFullError, match=f"nothing was left at {tmp_path / 'new.json'} .there was no earlier"):
        write_json_atomic(tmp_path / "new.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_corpus_build(tiny_corpus, tmp_path):
    from training.corpus import CorpusConfig, build_corpus, local_executor

    out = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, out)  # the earlier build
    before = tree_digest(out)
    stages = []

    def fills_up_in_dedup(steps, tasks, workers, logging_dir):
        stage = local_executor(steps, tasks=tasks, workers=workers, logging_dir=logging_dir)
        stages.append(Path(logging_dir).name)
        if stages[-1] != "dedup":
            return stage

        class Full:
            def run(self):
                stage.run()  # the documents are really written into the temp folder, then the disk is full
                raise enospc()
        return Full()

    cfg = CorpusConfig(manifest=str(tiny_corpus.parent / "m.jsonl"), mirror=str(tiny_corpus.parent / "src"),
                       out=str(out), cache_dir=str(tmp_path / "cache"), workers=1, val_fraction=0.3)
    with pytest.raises(DiskFullError, match=f"while writing the corpus {out}: the partial write was removed and "
                                            f"the earlier {out} is kept as it was"):
        build_corpus(cfg, executor=fills_up_in_dedup)
    assert stages[-1] == "dedup" and tree_digest(out) == before and leftovers(tmp_path) == []


def test_export(tiny_tokenizer, tmp_path, monkeypatch):
    import gguf
    import torch

    from engine.checkpoint import TOKENIZER_FILES, save_hf_model
    from engine.export import export
    from engine.model import ModelConfig, build_model
    from engine.tokenizer import load_tokenizer

    torch.manual_seed(0)
    vocab = len(load_tokenizer(tiny_tokenizer))
    model = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=32, n_ctx=32, vocab_size=vocab), 0, 0, 0)
    save_hf_model(model.eval(), tmp_path / "model", [tiny_tokenizer / f for f in TOKENIZER_FILES
                                                    if (tiny_tokenizer / f).is_file()])
    out = tmp_path / "exports" / "gguf"
    export(tmp_path / "model", "gguf", out)  # the earlier export
    before = tree_digest(out)
    real = gguf.GGUFWriter.write_tensors_to_file

    def fills_up(self, *a, **kw):
        real(self, *a, **kw)
        raise enospc()

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", fills_up)
    with pytest.raises(DiskFullError, match=f"while writing {out}: the partial write was removed and the earlier "
                                            f"{out} is kept as it was"):
        export(tmp_path / "model", "gguf", out, dtype="f16")
    assert tree_digest(out) == before and leftovers(out.parent) == []
    with pytest.raises(DiskFullError, match=f"nothing was left at {tmp_path / 'exports' / 'new'}"):
        export(tmp_path / "model", "gguf", tmp_path / "exports" / "new")
    assert sorted(p.name for p in out.parent.iterdir()) == ["gguf"]


def test_cli_prints_the_message(tmp_path, monkeypatch, capsys):
    """The CLI shows the same sentence (cli.main catches OSError), not a traceback."""
    import cli
    import engine.export as E

    def full(*a, **kw):
        with atomic.atomic_dir(tmp_path / "x"):
            raise enospc()

    monkeypatch.setattr(E, "export", full)
    assert cli.main(["export", "--model", str(tmp_path), "--format", "gguf", "--out", str(tmp_path / "x")]) == 2
    assert "error: the disk is full (no space left on device) while writing" in capsys.readouterr().err
