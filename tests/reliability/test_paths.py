"""Every path a visitor of the web app names stays inside the app's allowed roots (engine/paths.py): the checker
itself (`../` traversal, symlinks out of a root, a symlink that stays inside, bad types), and each entry point
that takes a path — model loading (generate, compare, the picker's card), job arguments (training/job_runner.py
PATH_ARGS and model), publishing, the corpus report — refused with a message naming the field, plus one refusal
through the running app's `/generate` API. Unconfined (the CLI) nothing changes. Uploads are gradio's: its
preprocess only accepts files from its own upload folder (gradio/processing_utils.py `_check_allowed`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine import paths
from engine.paths import PathError


@pytest.fixture()
def tree(tmp_path, tiny_tokenizer):
    """allowed/ (a root, with a real model folder and two symlinks) and outside/ (a model folder too)."""
    from engine.checkpoint import save_hf_model
    from engine.model import build_model, model_config

    root, outside = tmp_path / "allowed", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    model = build_model(model_config("tiny", 512, n_layer=1, n_ctx=16), 0, 0, 0)
    files = [tiny_tokenizer / f for f in ("tokenizer.json", "tokenizer_config.json")]
    save_hf_model(model, outside / "secret-model", extra_files=files)
    save_hf_model(model, root / "model", extra_files=files)
    (root / "escape").symlink_to(outside / "secret-model", target_is_directory=True)
    (root / "alias").symlink_to(root / "model", target_is_directory=True)
    return root, outside


def test_inside_refuses_traversal_and_symlink_escape(tree):
    root, outside = tree
    assert paths.inside(root / "model", [root], "model") == (root / "model").resolve()
    assert paths.inside(root, [root], "out") == root.resolve()  # the root itself
    assert paths.inside(root / "alias", [root], "model") == (root / "model").resolve()  # a link that stays in
    assert paths.inside(root / "new" / "run", [root], "out") == (root / "new" / "run").resolve()  # not yet there
    for bad in (root / ".." / "outside" / "secret-model", f"{root}/../../../../../../etc", "/etc/passwd",
                root / "escape", root / "escape" / "config.json", "~"):
        with pytest.raises(PathError, match=r"model=.* is outside the folders this app may use"):
            paths.inside(bad, [root], "model")
    # a sibling whose name merely starts with the root's is not inside it (prefix match would say it is)
    (root.parent / "allowed-not").mkdir()
    with pytest.raises(PathError):
        paths.inside(root.parent / "allowed-not", [root], "out")
    with pytest.raises(PathError, match="must be a path"):
        paths.inside(5, [root], "out")
    with pytest.raises(PathError, match="NUL byte"):
        paths.inside(f"{root}/a\x00b", [root], "out")
    with pytest.raises(PathError, match="escape"):  # the message names the path given, not where it points
        try:
            paths.inside(root / "escape", [root], "model")
        except PathError as e:
            assert str(outside) not in str(e)
            raise
    with pytest.raises(ValueError, match="roots is empty"):
        paths.inside(root, [], "out")


def test_check_is_the_identity_until_confined(tree):
    root, outside = tree
    assert paths.allowed_roots() is None
    assert paths.check("/etc", "model") == "/etc"  # the CLI: the user owns the machine
    with paths.confined([root]):
        assert paths.allowed_roots() == (root.resolve(),)
        with pytest.raises(PathError):
            paths.check("/etc", "model")
    assert paths.allowed_roots() is None  # restored


def test_model_loading_is_confined(tree):
    from engine import serving
    from engine.loading import ModelCache, resolve_model_path

    root, outside = tree
    cache = ModelCache(budget=10**9)
    with paths.confined([root]):
        assert cache.get(root / "model").model is not None
        assert resolve_model_path(root / "alias") == root / "alias"
        for bad in (outside / "secret-model", root / "escape", root / ".." / "outside" / "secret-model"):
            with pytest.raises(PathError, match="model="):
                cache.get(bad)
            with pytest.raises(PathError, match="model="):
                serving.model_info(str(bad))  # the picker's card line reads the folder: confined too
        with pytest.raises(PathError, match="model="):
            serving.load_model(f"{root}/../outside/secret-model")
    assert cache.get(outside / "secret-model").model is not None  # unconfined: the CLI loads anything


def test_job_arguments_are_confined(tree, tiny_corpus, tiny_tokenizer):
    from training import jobs as J

    root, outside = tree
    (root / "corpus-link").symlink_to(outside, target_is_directory=True)  # a link out of the root
    ok = dict(preset="tiny", corpus=str(tiny_corpus), tokenizer=str(tiny_tokenizer), out=str(root / "run"),
              tokens_cache=str(root / "tokens"), max_steps=2)
    cases = [("train", ok | {"out": str(root / ".." / "outside" / "run")}, "out="),
             ("train", ok | {"tokens_cache": "/tmp"}, "tokens_cache="),
             ("train", ok | {"corpus": str(root / "corpus-link")}, "corpus="),
             ("train", {"resume": str(root / "escape")}, "resume="),
             ("tokenizer", {"corpus": str(root / "corpus-link"), "out": str(root / "tok")}, "corpus="),
             ("corpus", {"manifest": "/etc/passwd", "out": str(root / "c")}, "manifest="),
             ("corpus", {"manifest": str(root / "m.jsonl"), "mirror": str(outside), "out": str(root / "c")},
              "mirror="),
             ("quantize", {"model": str(root / "escape"), "method": "int8-cpu", "out": str(root / "q")}, "model="),
             ("eval", {"model": str(root / "model"), "out": str(outside / "report.json")}, "out=")]
    with paths.confined([root, tiny_tokenizer, tiny_corpus]):
        for kind, args, field in cases:
            with pytest.raises(J.JobError, match=rf"{kind}: {field}.* is outside the folders"):
                J.create(kind, root=root / "jobs", **args)
        # inside the roots the same arguments pass the check (and start nothing: create() only records)
        job = J.create("train", root=root / "jobs", **ok)
        assert J.status(job, root=root / "jobs")["args"]["out"] == str((root / "run").resolve())
    J.stop(job, root=root / "jobs")
    assert [j["id"] for j in J.list_jobs(root / "jobs")] == [job]  # nothing else was recorded


def test_publish_and_corpus_report_are_confined(tree, tiny_corpus):
    from engine.publish import publish
    from ui.corpus_tab import report_view

    root, outside = tree
    with paths.confined([root]):
        with pytest.raises(PathError, match="model="):
            publish(outside / "secret-model", "alice/x", dry_run_dir=root / "staged")
        with pytest.raises(PathError, match="corpus="):
            report_view(str(tiny_corpus))
    assert not (root / "staged").exists()
    assert report_view(str(tiny_corpus))[0].startswith("**")  # unconfined it reads the report


def test_app_roots_cover_what_the_app_offers(tree, tiny_corpus, monkeypatch):
    import app

    root, outside = tree
    monkeypatch.setenv(paths.ENV_EXTRA_ROOTS, str(outside))
    ctx = app.make_ctx(str(root / "model"), str(tiny_corpus), roots=[str(root)])
    roots = [Path(r).resolve() for r in app.app_roots(ctx) if r]
    for must in (root, Path("data"), root / "model", tiny_corpus, Path(app.__file__).parent / "training" /
                 "sources.jsonl", outside):
        assert must.resolve() in roots


def test_the_running_app_refuses_a_path_outside_its_roots(app_url, app_run):
    from app_fixtures import api_client

    c = api_client(app_url)
    with paths.confined([app_run.parent]):  # the app runs in this process: what app.main() sets up
        with pytest.raises(Exception, match=r"model='\.\./\.\./etc' is outside the folders"):
            c.predict(prompt="The king", year=1600, max_new_tokens=2, model="../../etc", api_name="/generate")
        out = c.predict(prompt="The king", year=1600, max_new_tokens=2, temperature=0, model=str(app_run),
                        api_name="/generate")
    assert isinstance(out, str) and out  # inside the roots the same call answers
