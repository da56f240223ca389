import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "scripts")):
    if path not in sys.path:
        sys.path.insert(0, path)


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _downloads_in_a_temporary_cache(tmp_path_factory):
    """scripts/build.py keeps downloads in the datasets cache (HF_DATASETS_CACHE) by default: the
    tests must not fill the user's own cache, nor find files an earlier run left there.

    datasets reads HF_DATASETS_CACHE once, when it is imported (the test modules import it before this
    runs), so its `config` is pointed there too: `load_dataset(<repo dir>)` caches a local repository
    under the directory's name and a hash of its card, not of its file names, so a repository of an
    earlier run with the same temporary name and card (a rename-only rebuild: another shard order)
    would otherwise be read back from the user's cache instead of from its files."""
    import datasets.config

    cache = tmp_path_factory.mktemp("hf-datasets-cache")
    saved = os.environ.get("HF_DATASETS_CACHE")
    saved_config = {name: getattr(datasets.config, name) for name in ("HF_DATASETS_CACHE", "DOWNLOADED_DATASETS_PATH", "EXTRACTED_DATASETS_PATH")}
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    datasets.config.HF_DATASETS_CACHE = cache
    datasets.config.DOWNLOADED_DATASETS_PATH = cache / datasets.config.DOWNLOADED_DATASETS_DIR
    datasets.config.EXTRACTED_DATASETS_PATH = cache / datasets.config.DOWNLOADED_DATASETS_DIR / datasets.config.EXTRACTED_DATASETS_DIR
    yield
    for name, value in saved_config.items():
        setattr(datasets.config, name, value)
    if saved is None:
        os.environ.pop("HF_DATASETS_CACHE", None)
    else:
        os.environ["HF_DATASETS_CACHE"] = saved


@pytest.fixture(scope="session")
def mirror(tmp_path_factory):
    """A generated mirror of 8 images per split and 2 questions per image, shared by the modules that
    need no other size (a module's own `mirror` fixture overrides it). Read-only: build from it, link
    or copy its files, never write into it."""
    from helpers import make_mirror

    path = tmp_path_factory.mktemp("mirror")
    make_mirror(path, images_per_split=8, questions_per_image=2)
    return path
