"""Data: manifests, downloads, image validation, ingestion, stats and benchmark datasets.

Public entry points::

    from iris.data.ids import image_id, clean_source
    from iris.data.ingest import ingest, IngestReport
    from iris.data.records import load_ingest_record, load_manifest_rows
    from iris.data.fashion_mnist import build, read_answer_key
    from iris.data.stats import data_stats
"""
