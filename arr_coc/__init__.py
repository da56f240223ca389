"""Building blocks of the arr-coc-vqa-training builder (`arr_coc_vqa.py`), one subpackage per layer.

From the bottom up; a module imports only from its own layer or the layers listed before it
(tests/test_layers.py checks this):

- `schema`     the example schema of the contract (features, ClassLabel names, row ids)
- `process/`   process-level helpers: the bad-data error type, Ctrl-C/SIGTERM handling, CLI argument types
- `readers/`   the sources' official files: where they live (`sources`), incremental JSON, checked
               fields, unique ids, and one reader per source (`vqav2`, `okvqa`, `gqa`, `coco`, `vg`)
- `network/`   reading local files and URLs alike: the bounded retry policy, ranged reads of remote
               archives, resumable verified downloads
- `pipeline/`  one build: image selection, joining records, image checks, rows, leakage control,
               counts and the build report; `shard` runs one shard end to end
- `publish/`   putting a build in the repository: Parquet export, the card's YAML, staging and the
               all-or-nothing swap
"""
