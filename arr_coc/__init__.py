"""Building blocks of the arr-coc-vqa-training builder (`arr_coc_vqa.py`).

One module per idea: `schema` (the example features), `sources` (file names and official URLs),
`jsonstream` (incremental JSON), one reader per source (`vqav2`, `okvqa`, `gqa`, `coco`),
`selection` (the image cap), `images` (image bytes and their checks), `conversations` (rows) and
`stats` (what a build read, wrote and skipped).
"""
