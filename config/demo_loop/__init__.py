"""`manage.py demo_loop`: scripted labelers turn the whole loop once on the real base model."""
