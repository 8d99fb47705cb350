"""The admin side of imports: ``ImportMixin`` admins of ``BookResource`` resources (CSV and XLSX only, errors
by line and column, the file's SHA-256 in the audit event, large files sent to a background job)."""

from __future__ import annotations

from django.contrib import messages as admin_messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _

from .files import FORMATS, FileReadError, count_rows
from .jobs import background_threshold, dotted_path, start_import_job
from .resource import BookResource, file_sha256


class BookImportAdminMixin:
    """For ``ImportMixin`` admins of ``BookResource`` resources: the confirmed import carries the uploaded
    file's SHA-256 into the audit event, and the preview lists errors as ``line N, column C: ...``."""

    import_template_name = "admin/loans/import.html"

    def get_import_formats(self):
        """CSV and XLSX only: the formats an import file may have (``import_files``)."""
        return list(FORMATS.values())

    def add_data_read_fail_error_to_form(self, form, e):
        if isinstance(e, FileReadError):
            form.add_error("import_file", str(e))
        else:
            super().add_data_read_fail_error_to_form(form, e)

    def import_action(self, request, **kwargs):
        """A file of more than ``IMPORT_BACKGROUND_THRESHOLD`` data rows is not read in the request: it is
        stored, its dry run (or, with the confirmation step switched off, its import) is queued as an
        ``ImportJob`` and the browser goes to the job's result page. Smaller files keep the usual flow."""
        if request.method == "POST" and self.has_import_permission(request):
            form = self.create_import_form(request)
            if form.is_valid():
                input_format = self.get_import_formats()[int(form.cleaned_data["format"])]
                # The upload is read where it lies (a big one in its temporary file), a block at a time: it is
                # counted, then copied to the import's storage, never held whole in memory.
                upload = form.cleaned_data["import_file"]
                format_name = dotted_path(input_format)
                try:
                    rows = count_rows(upload, format_name)
                except Exception:  # unreadable: the usual flow shows the library's message on the form
                    rows = 0
                    upload.seek(0)
                resource_class = self.choose_import_resource_class(form, request)
                if rows > background_threshold() and issubclass(resource_class, BookResource):
                    job = start_import_job(
                        request.user,
                        resource_class,
                        upload,
                        file_name=upload.name,
                        format_name=format_name,
                        dry_run=not self.is_skip_import_confirm_enabled(),
                    )
                    admin_messages.info(
                        request,
                        _(
                            "The file has %(rows)s rows: it is checked in the background; this page shows the result."
                        )
                        % {"rows": rows},
                    )
                    return HttpResponseRedirect(reverse("imports:job", args=[job.pk]))
        return super().import_action(request, **kwargs)

    def process_import(self, request, **kwargs):
        confirm_form = self.create_confirm_form(request)
        if self.has_import_permission(request) and confirm_form.is_valid():
            import_formats = self.get_import_formats()
            input_format = import_formats[int(confirm_form.cleaned_data["format"])](
                encoding=self.from_encoding
            )
            storage = self.get_tmp_storage_class()(
                name=confirm_form.cleaned_data["import_file_name"],
                encoding=None if input_format.is_binary() else self.from_encoding,
                read_mode=input_format.get_read_mode(),
                **self.get_tmp_storage_class_kwargs(),
            )
            request._import_file_sha256 = file_sha256(storage.read())
        return super().process_import(request, **kwargs)

    def get_import_data_kwargs(self, **kwargs):
        request = kwargs.get("request")
        kwargs = super().get_import_data_kwargs(**kwargs)
        kwargs.pop("request", None)
        sha = getattr(request, "_import_file_sha256", None)
        if sha:
            kwargs["file_sha256"] = sha
        return kwargs
