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
    tests must not fill the user's own cache, nor find files an earlier run left there."""
    saved = os.environ.get("HF_DATASETS_CACHE")
    os.environ["HF_DATASETS_CACHE"] = str(tmp_path_factory.mktemp("hf-datasets-cache"))
    yield
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
