from toroid.backend.report import collect, combined_csv, render_html, report_zip, write_report  # noqa: F401  TEMP
