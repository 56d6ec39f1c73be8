"""Raster and file I/O: windowed reading, COG writing, atomic outputs."""
