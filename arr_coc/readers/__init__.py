"""The sources' official files: where they live, and one streaming reader per source."""
