"""Road mask -> centerline graph -> GeoJSON / GeoPackage.

``skeleton`` turns raster blocks into pixel paths, ``graph`` merges them across blocks and
cleans the graph in metres, ``geo`` places it on the map, ``tool`` ties it together.
"""
