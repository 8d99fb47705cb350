"""Imports of the loan book and the configuration (django-import-export): widgets, the keyed loader, the
resource with its fast path, the admin side, background jobs, file reading and the job pages."""
