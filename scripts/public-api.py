#!/usr/bin/env python3
"""List ocipush's public API from rustdoc's JSON (target/doc/ocipush.json): one line per public
item reachable from the crate root — modules, re-exports, types with their public fields,
variants and inherent methods, traits with their items, functions, constants. Sorted, so a
change to the surface is a readable diff of tests/public-api.txt."""
import json
import sys

doc = json.load(open(sys.argv[1]))
index = doc["index"]
out = set()


def attrs(item):
    text = json.dumps(item.get("attrs", []))
    return " #[non_exhaustive]" if "non_exhaustive" in text else ""


def methods(item, path):
    for impl_id in item["inner"][next(iter(item["inner"]))].get("impls", []):
        impl = index.get(str(impl_id))
        if not impl:
            continue
        inner = impl["inner"]["impl"]
        if inner.get("trait") is not None or inner.get("is_synthetic") or inner.get("blanket_impl"):
            continue
        for m in inner["items"]:
            m = index.get(str(m))
            if m and m.get("visibility") == "public" and m.get("name"):
                kind = next(iter(m["inner"]))
                out.add(f"{path}::{m['name']} ({'method' if kind == 'function' else kind})")


def walk(item_id, path, seen):
    item = index.get(str(item_id))
    if item is None or item_id in seen:
        return
    seen = seen | {item_id}
    kind = next(iter(item["inner"]))
    inner = item["inner"][kind]
    name = item.get("name")
    here = f"{path}::{name}" if path and name else (name or path)
    if kind == "module":
        out.add(f"{here} (mod)")
        for child in inner["items"]:
            walk(child, here, seen)
    elif kind == "use":
        target = inner.get("id")
        alias = inner["name"]
        if target is not None and str(target) in index:
            t = index[str(target)]
            tkind = next(iter(t["inner"]))
            if tkind == "module" and inner.get("is_glob"):
                for child in t["inner"]["module"]["items"]:
                    walk(child, path, seen)
                return
            # A re-export shows under its new path, with what it is.
            renamed = dict(t, name=alias)
            index[f"reexport:{path}::{alias}"] = renamed
            walk(f"reexport:{path}::{alias}", path, seen)
        else:
            out.add(f"{path}::{alias} (re-export of {inner['source']})")
    elif item.get("visibility") != "public" and not str(item_id).startswith("reexport:"):
        return
    elif kind == "struct":
        out.add(f"{here} (struct){attrs(item)}")
        fields = inner["kind"].get("plain", {}).get("fields", []) if isinstance(inner["kind"], dict) else []
        for f in fields:
            f = index.get(str(f))
            if f and f.get("visibility") == "public":
                out.add(f"{here}.{f['name']} (field)")
        methods(item, here)
    elif kind == "enum":
        out.add(f"{here} (enum){attrs(item)}")
        for v in inner["variants"]:
            v = index.get(str(v))
            if v:
                out.add(f"{here}::{v['name']} (variant)")
        methods(item, here)
    elif kind == "trait":
        out.add(f"{here} (trait)")
        for t in inner["items"]:
            t = index.get(str(t))
            if t:
                out.add(f"{here}::{t['name']} (trait item)")
    elif kind in ("function", "constant", "static", "type_alias", "macro"):
        out.add(f"{here} ({kind})")
    else:
        out.add(f"{here} ({kind})")


walk(doc["root"], "", frozenset())
print("\n".join(sorted(out)))
