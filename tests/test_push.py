"""scripts/push_to_hub.py: what it sends, what it deletes, and that the Hub repo stays loadable at
every commit. A stand-in for HfApi records the calls and keeps the Hub's files in memory."""

import os
import shutil

import build
import datasets
import push_to_hub
import pytest
from helpers import SPLITS, make_mirror, to_older_layout, tree_digest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete


class FakeHub:
    """list_repo_files/create_commit over a dict of files; one commit may be made to fail."""

    def __init__(self, files: dict, fail_at_commit=None):
        self.files, self.fail_at_commit, self.calls = dict(files), fail_at_commit, []

    def list_repo_files(self, repo_id, repo_type=None):
        self.calls.append(("list_repo_files", repo_id, repo_type))
        return sorted(self.files)

    def create_commit(self, repo_id, operations, commit_message, repo_type=None):
        operations = list(operations)
        self.calls.append(("create_commit", commit_message, operations))
        if self.fail_at_commit == sum(call[0] == "create_commit" for call in self.calls):
            raise ConnectionError("the network went away")
        staged = dict(self.files)  # a Hub commit is all or nothing
        for operation in operations:
            if isinstance(operation, CommitOperationAdd):
                with open(operation.path_or_fileobj, "rb") as handle:
                    staged[operation.path_in_repo] = handle.read()
            else:
                assert isinstance(operation, CommitOperationDelete)
                del staged[operation.path_in_repo]
        self.files = staged
        return f"https://huggingface.co/datasets/{repo_id}/commit/{len(self.calls)}"

    def checkout(self, path):
        for name, data in self.files.items():
            os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
            with open(os.path.join(path, name), "wb") as handle:
                handle.write(data)
        return path


def files_of(repo) -> dict:
    return {path: (repo / path).read_bytes() for path in push_to_hub.files_to_upload(str(repo))}


def assert_loadable(repo) -> None:
    """Every config of the card loads, with the row counts its dataset_info promises."""
    infos = datasets.get_dataset_infos(str(repo))
    assert infos
    for config, info in infos.items():
        loaded = datasets.load_dataset(str(repo), config)
        assert {split: len(loaded[split]) for split in loaded} == {split: info.splits[split].num_examples for split in info.splits}


@pytest.fixture(scope="module")
def published_and_local(tmp_path_factory):
    """The Hub holds full + small; the local checkout has only a rebuilt small (other shard names)."""
    mirror = tmp_path_factory.mktemp("mirror")
    make_mirror(mirror, images_per_split=4, questions_per_image=2)
    published = tmp_path_factory.mktemp("published")
    args = ["--data-dir", str(mirror), "--output-dir", str(published)]
    assert build.main(["--config", "full", "--num-shards", "2"] + args) == 0
    assert build.main(["--config", "small", "--num-shards", "4"] + args) == 0
    local = tmp_path_factory.mktemp("local")
    shutil.copytree(published, local, dirs_exist_ok=True)
    rebuild = ["--config", "small", "--num-shards", "2", "--turns-per-example", "1", "--data-dir", str(mirror), "--output-dir", str(local)]
    assert build.main(rebuild) == 0
    shutil.rmtree(local / "data" / "full")
    (local / "scripts").mkdir()
    (local / "scripts" / "build.py").write_text("# the build script\n")
    return published, local


def test_push_replaces_only_the_pushed_configs_files(published_and_local, tmp_path):
    published, local = published_and_local
    hub = FakeHub(files_of(published))
    files = push_to_hub.files_to_upload(str(local))
    commits = push_to_hub.push(hub, "me/ds", str(local), files, "Update")

    full_before = {path: data for path, data in files_of(published).items() if path.startswith("data/full/")}
    assert {path: data for path, data in hub.files.items() if path.startswith("data/full/")} == full_before
    small = sorted(path for path in hub.files if path.startswith("data/small/"))
    assert small == sorted(path for path in files if path.startswith("data/small/"))
    assert "data/small/train-00015-of-00016-coco.parquet" not in hub.files  # the earlier build's extra shard
    assert hub.files["README.md"] == (local / "README.md").read_bytes()
    assert [commit.message for commit in commits] == ["Update: code", "Update: data and card"]
    assert commits[0].deletes == [] and set(commits[1].deletes) == {
        path for path in files_of(published) if path.startswith("data/small/") and path not in files
    }
    assert [call[0] for call in hub.calls] == ["list_repo_files", "create_commit", "create_commit"]
    assert_loadable(hub.checkout(tmp_path / "hub"))


@pytest.mark.parametrize("fail_at_commit", [1, 2])
def test_a_push_that_fails_between_commits_leaves_the_hub_loadable(published_and_local, tmp_path, fail_at_commit):
    published, local = published_and_local
    hub = FakeHub(files_of(published), fail_at_commit=fail_at_commit)
    files = push_to_hub.files_to_upload(str(local))
    with pytest.raises(ConnectionError):
        push_to_hub.push(hub, "me/ds", str(local), files, "Update")
    before = files_of(published)
    data_and_card = {path: data for path, data in hub.files.items() if path.startswith("data/") or path == "README.md"}
    assert data_and_card == {path: data for path, data in before.items() if path.startswith("data/") or path == "README.md"}
    assert ("scripts/build.py" in hub.files) == (fail_at_commit == 2)
    checkout = hub.checkout(tmp_path / "hub")
    assert_loadable(checkout)
    assert tree_digest(checkout) != {}


def test_dry_run_prints_the_plan_offline(published_and_local, capsys, monkeypatch):
    _, local = published_and_local
    monkeypatch.setattr(push_to_hub, "push", lambda *args, **kwargs: pytest.fail("the dry run sent something"))
    monkeypatch.setattr(push_to_hub, "hub_files", lambda *args, **kwargs: pytest.fail("--offline went online"))
    assert push_to_hub.main(["--dry-run", "--offline", "--repo-dir", str(local)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "commit 1 of 2: Update dataset: code" and "  add" in out[1] and out[1].endswith("scripts/build.py")
    assert "commit 2 of 2: Update dataset: data and card" in out
    assert [line.split()[-1] for line in out if line.startswith("  delete")] == ["above"]
    assert any("every Hub file under data/small/ not added above" in line for line in out)
    assert not any("data/full" in line for line in out)
    sizes = [int(line.split()[1].replace(",", "")) for line in out if line.startswith("  add")]
    assert out[-2] == f"total: {sum(sizes):,d} bytes in {len(sizes)} files -> NorthHead/arr-coc-vqa-training"


@pytest.fixture(scope="module")
def older_layout_on_the_hub(published_and_local, tmp_path_factory):
    """The Hub holds `full` in the layout before the interleaved order; the local checkout a new build of it."""
    published, _ = published_and_local
    local = tmp_path_factory.mktemp("rebuilt")
    shutil.copytree(published, local, dirs_exist_ok=True)
    shutil.rmtree(local / "data" / "small")  # this push is about full (and its per-source configs)
    older = tmp_path_factory.mktemp("older")
    shutil.copytree(published, older, dirs_exist_ok=True)
    old_names = to_older_layout(older, "full")
    hub_files = files_of(older)
    assert set(old_names) <= set(hub_files) and not set(old_names) & set(files_of(local))
    return hub_files, local, old_names


def test_push_deletes_an_older_layouts_shards_in_its_one_data_commit(older_layout_on_the_hub, tmp_path):
    hub_files, local, old_names = older_layout_on_the_hub
    hub = FakeHub(hub_files)
    commits = push_to_hub.push(hub, "me/ds", str(local), push_to_hub.files_to_upload(str(local)), "Update")
    data_commit = commits[-1]
    assert set(old_names) <= set(data_commit.deletes) and "README.md" in data_commit.adds
    assert not [path for path in hub.files if path in old_names]
    full = sorted(path for path in hub.files if path.startswith("data/full/"))
    assert full == sorted(path for path in files_of(local) if path.startswith("data/full/"))
    assert [path for path in hub.files if path.startswith("data/small/")] == [p for p in hub_files if p.startswith("data/small/")]
    checkout = hub.checkout(tmp_path / "hub")
    assert_loadable(checkout)  # full and every per-source config: their globs match the new names only
    assert sorted(datasets.get_dataset_config_names(str(checkout))) == sorted(["full", "small", "vqav2", "gqa", "okvqa", "coco"])


def test_dry_run_lists_the_older_layouts_shards_it_would_delete(older_layout_on_the_hub, capsys, monkeypatch):
    hub_files, local, old_names = older_layout_on_the_hub
    hub = FakeHub(hub_files)
    monkeypatch.setattr("huggingface_hub.HfApi", lambda *args, **kwargs: hub)
    assert push_to_hub.main(["--dry-run", "--repo-dir", str(local)]) == 0
    out = capsys.readouterr().out.splitlines()
    deletes = [line.split() for line in out if line.startswith("  delete")]
    assert sorted(words[-1] for words in deletes if words[1:3] == ["older", "layout"]) == old_names
    assert [call[0] for call in hub.calls] == ["list_repo_files"] and hub.files == hub_files  # nothing sent
    assert out[-1] == f"dry run: nothing sent; the Hub's {len(hub_files)} files listed"
    assert push_to_hub.main(["--dry-run", "--offline", "--repo-dir", str(local)]) == 0
    offline = capsys.readouterr().out
    assert "every Hub file under data/full/ not added above" in offline and not any(name in offline for name in old_names)
    assert len(hub.calls) == 1


def test_a_dry_run_that_cannot_list_the_hub_says_so_in_one_line(older_layout_on_the_hub, capsys, monkeypatch):
    _, local, _ = older_layout_on_the_hub

    class Offline:
        def list_repo_files(self, repo_id, repo_type=None):
            raise ConnectionError("no route to host")

    monkeypatch.setattr("huggingface_hub.HfApi", lambda *args, **kwargs: Offline())
    assert push_to_hub.main(["--dry-run", "--repo-dir", str(local)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: dry run of a push to NorthHead/arr-coc-vqa-training could not list the Hub's files (--offline")
    assert line.endswith("ConnectionError: no route to host")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n", "a Git LFS pointer"),
        (None, "not a Parquet file"),  # the real shard, cut short
    ],
    ids=["lfs-pointer", "truncated"],
)
def test_a_shard_that_is_not_parquet_stops_the_push_before_anything_is_sent(published_and_local, tmp_path, capsys, monkeypatch, content, message):
    _, local = published_and_local
    repo = tmp_path / "repo"
    shutil.copytree(local, repo)
    shard = sorted((repo / "data" / "small").glob("train-*.parquet"))[1]  # a real shard of the build
    shard.write_bytes(content if content is not None else shard.read_bytes()[:-10])
    monkeypatch.setattr("huggingface_hub.HfApi", lambda *args, **kwargs: pytest.fail("went online with a bad shard"))
    for extra in ([], ["--dry-run"]):
        assert push_to_hub.main(["--repo-dir", str(repo)] + extra) == 1
        [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert line.startswith(f"error: data/small/{shard.name}: " + message)


def test_a_card_that_would_hide_or_invent_a_config_is_refused(published_and_local, tmp_path):
    published, local = published_and_local
    fresh = tmp_path / "fresh"  # a checkout whose card has only `small`, while the Hub also has data/full
    shutil.copytree(local / "data", fresh / "data")
    from datasets.info import DatasetInfosDict

    from arr_coc.publish.card import updated_card

    info = DatasetInfosDict.from_directory(str(local))["small"]
    (fresh / "README.md").write_text(updated_card(None, "small", info, list(SPLITS)))
    hub = FakeHub(files_of(published))
    files = push_to_hub.files_to_upload(str(fresh))
    with pytest.raises(push_to_hub.PushError, match=r"no config reads the Hub's data/full/"):
        push_to_hub.push(hub, "me/ds", str(fresh), files, "Update")
    empty_hub = FakeHub({})
    with pytest.raises(push_to_hub.PushError, match=r"config '(full|vqav2|gqa|okvqa|coco)' reads data/full/ but neither"):
        push_to_hub.push(empty_hub, "me/ds", str(local), push_to_hub.files_to_upload(str(local)), "Update")
    assert [call[0] for call in hub.calls + empty_hub.calls] == ["list_repo_files", "list_repo_files"]


def test_dry_run_lists_exactly_the_repo_files_and_no_token(published_and_local, capsys, monkeypatch, tmp_path):
    """(Moved from test_export.py when the dry run started printing the plan.)"""
    published, local = published_and_local
    repo = tmp_path / "push-repo"
    shutil.copytree(local, repo)  # the junk below must not reach the other tests' repo
    secret = "hf_" + "x" * 34
    monkeypatch.setenv("HF_TOKEN", secret)
    for junk in (".env", "scratch/junk.parquet", ".venv/lib/x.py", "tests/__pycache__/a.pyc", ".build-staging/small-1/a.parquet"):
        path = repo / junk
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"HF_TOKEN={secret}")
    for wanted in ("arr_coc_vqa.py", "arr_coc/schema.py", "arr_coc/network/retry.py", "docs/rebuilding.md", "tests/test_export.py", ".gitattributes"):
        path = repo / wanted
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# copy")
    hub = FakeHub(files_of(published))
    monkeypatch.setattr("huggingface_hub.HfApi", lambda *args, **kwargs: hub)
    assert push_to_hub.main(["--dry-run", "--repo-dir", str(repo)]) == 0
    assert [call[0] for call in hub.calls] == ["list_repo_files"]  # read the Hub, sent nothing
    out = capsys.readouterr().out
    listed = [line.split()[-1] for line in out.splitlines() if line.startswith("  add")]
    expected = ["README.md", ".gitattributes", "arr_coc_vqa.py", "arr_coc/schema.py", "arr_coc/network/retry.py", "docs/rebuilding.md"]
    expected += ["scripts/build.py", "tests/test_export.py"]
    expected += [f"data/small/{name}" for name in os.listdir(repo / "data" / "small")]
    assert sorted(listed) == sorted(expected)
    total = sum(os.path.getsize(repo / path) for path in expected)
    assert f"total: {total:,d} bytes in {len(expected)} files" in out
    assert secret not in out


def test_a_card_with_broken_yaml_is_refused_in_one_line(published_and_local, tmp_path):
    _, local = published_and_local
    repo = tmp_path / "repo"
    shutil.copytree(local, repo)
    (repo / "README.md").write_text("---\nconfigs: [\n---\n# card\n")
    hub = FakeHub(files_of(local))
    with pytest.raises(push_to_hub.PushError, match=r"^README.md: cannot read the front matter: "):
        push_to_hub.push(hub, "me/ds", str(repo), push_to_hub.files_to_upload(str(repo)), "Update")
    assert [call[0] for call in hub.calls] == ["list_repo_files"]


def test_data_files_in_every_yaml_shape_name_their_folders():
    shapes = ["data/a/*", ["data/b/x-*", {"split": "train", "path": "data/c/train-*"}], {"train": "data/d/t-*", "test": ["data/e/*"]}]
    assert [push_to_hub._patterns(shape) for shape in shapes] == [
        ["data/a/*"], ["data/b/x-*", "data/c/train-*"], ["data/d/t-*", "data/e/*"]
    ]
