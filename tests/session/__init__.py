"""Tests of ``mailwright session`` (``mailwright.client.interactive``)."""
