"""The parts of the sample mirror generator, one module per idea.

scripts/make_sample_mirror.py is the entry point (CLI, write_sample_mirror, destination safety) and
ties these together: names (official file names and splits), real_records and vocabulary (what the
records are made of), plan (which images and questions exist and which are broken), zipjson
(deterministic zip and streamed JSON writing), one record module per source (vqav2, okvqa, gqa, coco,
visual_genome), images (textured JPEG/PNG archives) and manifest (what a correct build should see).
"""
