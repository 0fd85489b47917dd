"""Tiny option sets of every preset, shared by the fuzz suites (fast to build and to run)."""

IMAGE = {
    "glow": {"levels": 1, "steps": 1, "hidden": [8]},
    "realnvp_image": {"scales": 1, "layers": 1, "hidden": [8]},
}
SMALL = {
    "nice": {"layers": 2, "hidden": [8]},
    "realnvp": {"layers": 2, "hidden": [8]},
    "maf": {"layers": 2, "hidden": [8]},
    "iaf": {"layers": 2, "hidden": [8]},
    "nsf": {"layers": 1, "hidden": [8]},
    "naf": {"layers": 1, "hidden": [8]},
    "bnaf": {"layers": 1},
    "planar": {"layers": 2},
    "radial": {"layers": 2},
    "sylvester": {"layers": 2},
    "residual": {"layers": 1, "hidden": [8]},
    "ffjord": {"layers": 1, "hidden": [8]},
}
