"""Reading local files and URLs alike: one retry policy, ranged reads of archives, resumable downloads."""
