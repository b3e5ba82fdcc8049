"""Task templates (templates.json) and the formatter that turns them into prompt/answer parts."""
