"""The page frame every study report shares (a jinja2 fragment: `title`): self-contained HTML, no external URL."""

PAGE_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cssci study report - {{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 1em 0; } h2 { border-bottom: 2px solid #446; }
</style></head><body>
<h1>Study report: {{ title }}</h1>
"""
