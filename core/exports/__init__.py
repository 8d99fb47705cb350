"""Compliance exports: streamed, masked, escaped, with a manifest.

``files.export_to_file`` is the one workflow behind ``manage.py export_log``, the admin's "Export" button and
the background task ``jobs.run_export_job``. What can be exported is a registry of kinds (``kinds``): the audit
trail is core's own (``audit``); the notification log registers itself from its app. Rows are read and
written 2,000 at a time (``rows``), written as CSV, XLSX or JSON (``writers``), so memory stays flat whatever
the row count.
"""
