"""Look inside masked shards: statistics, rendering, verification and repeated passages."""
