"""STAC Items and ItemCollections as scenes: the visual asset of each item, named by its id.

A search's result saved as JSON (``stac-client search ... --save items.json``, or a STAC API's
``/search`` response) is an ItemCollection; one item is a Feature. For each item roadseg picks
the asset to read: ``--stac-asset KEY`` if given, else the asset whose roles include "visual",
else the one keyed "visual", else an RGB asset (its ``eo:bands`` common names red, green and blue).
Relative hrefs are resolved against the JSON's own location. Outputs are named after the
item's id, since asset file names (``TCI.tif``, ``visual.tif``) repeat across items.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from roadseg.errors import InputError
from roadseg.io.remote import StacAsset, filesystem, is_url


def looks_like_stac(text: str) -> bool:
    """A .json argument: a STAC Item or ItemCollection (checked when read)."""
    return text.split("?", 1)[0].lower().endswith(".json")


def read_stac(location: str, asset: str | None = None) -> list[StacAsset]:
    """The scene of every item in the Item or ItemCollection at ``location`` (a file or URL)."""
    doc = _load(location)
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "Feature":
        items = [doc]
    elif kind == "FeatureCollection":
        items = doc.get("features") or []
    else:
        raise InputError(
            f"'{location}' is not a STAC Item or ItemCollection (its type is {kind!r}); expected the JSON of a "
            "STAC item or of a search's results"
        )
    if not items:
        raise InputError(f"STAC ItemCollection '{location}' holds no item")
    scenes = []
    for item in items:
        item_id = str(item.get("id") or "")
        if not item_id or "/" in item_id:
            raise InputError(
                f"a STAC item in '{location}' has no usable id ({item_id!r}); outputs are named by it"
            )
        key = _pick_asset(item, asset, location)
        info = item["assets"][key]
        href = str(info.get("href") or "")
        if not href:
            raise InputError(f"asset '{key}' of STAC item '{item_id}' has no href")
        gsd = info.get("gsd", (item.get("properties") or {}).get("gsd"))
        gsd = float(gsd) if isinstance(gsd, (int, float)) and gsd > 0 else None
        scenes.append(StacAsset(_resolve(href, location), item_id, _rgb_bands(info), gsd))
    return scenes


def _load(location: str) -> Any:
    try:
        if is_url(location):
            fs, root = filesystem(location)
            text = fs.cat_file(root).decode("utf-8")
        else:
            text = Path(location).read_text(encoding="utf-8")
        return json.loads(text)
    except FileNotFoundError:
        raise InputError(f"STAC file '{location}' not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"'{location}' cannot be read as STAC JSON ({' '.join(str(exc).split())[:200]})"
        ) from None


def _pick_asset(item: dict[str, Any], asset: str | None, location: str) -> str:
    assets = item.get("assets") or {}
    item_id = item.get("id")
    if asset is not None:
        if asset not in assets:
            raise InputError(
                f"STAC item '{item_id}' has no asset '{asset}'; its assets are {', '.join(sorted(assets)) or 'none'}"
            )
        return asset
    for key, value in assets.items():
        if "visual" in (value.get("roles") or []):
            return key
    if "visual" in assets:
        return "visual"
    for key, value in assets.items():
        names = {b.get("common_name") for b in value.get("eo:bands", []) or value.get("bands", []) or []}
        if {"red", "green", "blue"} <= names:
            return key
    raise InputError(
        f"STAC item '{item_id}' in '{location}' has no visual (RGB) asset; choose one with --stac-asset KEY "
        f"(its assets: {', '.join(sorted(assets)) or 'none'})"
    )


def _rgb_bands(asset: dict[str, Any]) -> tuple[int, ...] | None:
    """The 1-based bands named red, green and blue in the asset's ``eo:bands`` (STAC 1.0) or
    ``bands`` (1.1), in that order; None unless all three are named."""
    names = [
        b.get("common_name") or b.get("eo:common_name")
        for b in asset.get("eo:bands") or asset.get("bands") or []
    ]
    if not {"red", "green", "blue"} <= set(names):
        return None
    return tuple(names.index(c) + 1 for c in ("red", "green", "blue"))


def _resolve(href: str, location: str) -> str:
    """An asset href as a URL or absolute path: relative hrefs start at the JSON's folder."""
    if is_url(href) or Path(href).is_absolute():
        return href
    if is_url(location):
        if location.startswith(("http://", "https://")):
            return urljoin(location, href)
        scheme, rest = location.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), href))}"
    return str((Path(location).parent / href).resolve())
