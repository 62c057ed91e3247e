"""Rebuilds from DynamoDB table exports in S3 (ExportTableToPointInTime), which consume no read
capacity: full exports feed `reindex --from-export` as a page source, incremental exports are
applied like stream records by `apply-export`, and `export start` requests them.

Modules: `location` (S3 or a local copy, streaming reads), `manifest` (the two manifests),
`reader` (data files -> verified items and pages), `incremental`, `start`.
"""
