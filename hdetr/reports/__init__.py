"""Report writers (markdown, JSON, figures); filled in below."""
