"""Words of the synthetic marketplace: a category tree with complements, colours, seller phrasing.

Embedded so that a fresh clone generates a believable catalogue with no download. Leaf categories
carry the nouns that titles and queries use, the spec tokens that tell a model line's variants apart,
a typical price, and the leaves whose products complement theirs (phone -> phone case, charger).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Leaf:
    top: str  # top-level category
    noun: str  # what titles and queries call it ("running shoes")
    specs: tuple[str, ...]  # tokens that tell variants of one model line apart
    price: float  # typical price (the median of its products' prices)
    complements: tuple[str, ...] = ()  # nouns of leaves bought together with this one


_GB = ("64gb", "128gb", "256gb", "512gb")
_SIZES = ("xs", "s", "m", "l", "xl", "xxl")
_SHOE = ("size 38", "size 40", "size 42", "size 44", "size 46")
_WATTS = ("500w", "800w", "1000w", "1200w", "1500w")
_VOL = ("0.5l", "1l", "1.5l", "1.7l", "2l")

LEAVES: tuple[Leaf, ...] = (
    Leaf("electronics", "smartphone", _GB, 450.0, ("phone case", "screen protector", "charger", "earbuds")),
    Leaf(
        "electronics",
        "phone case",
        ("slim", "rugged", "wallet", "clear"),
        15.0,
        ("smartphone", "screen protector"),
    ),
    Leaf("electronics", "screen protector", ("glass", "matte", "privacy"), 9.0, ("smartphone", "phone case")),
    Leaf(
        "electronics", "charger", ("20w", "30w", "65w", "100w"), 25.0, ("smartphone", "laptop", "usb cable")
    ),
    Leaf("electronics", "usb cable", ("1m", "2m", "3m", "usb-c", "lightning"), 8.0, ("charger",)),
    Leaf(
        "electronics",
        "laptop",
        ("13 inch", "14 inch", "15 inch", "16 inch", "16gb ram", "32gb ram"),
        1100.0,
        ("laptop bag", "wireless mouse", "keyboard", "charger", "monitor"),
    ),
    Leaf("electronics", "laptop bag", ("13 inch", "15 inch", "17 inch"), 35.0, ("laptop",)),
    Leaf(
        "electronics",
        "wireless mouse",
        ("silent", "ergonomic", "gaming"),
        22.0,
        ("laptop", "keyboard", "mouse pad"),
    ),
    Leaf("electronics", "mouse pad", ("xl", "rgb", "gel"), 10.0, ("wireless mouse",)),
    Leaf(
        "electronics",
        "keyboard",
        ("mechanical", "wireless", "compact", "rgb"),
        60.0,
        ("wireless mouse", "monitor"),
    ),
    Leaf(
        "electronics",
        "monitor",
        ("24 inch", "27 inch", "32 inch", "4k", "144hz"),
        280.0,
        ("keyboard", "hdmi cable"),
    ),
    Leaf("electronics", "hdmi cable", ("1m", "2m", "5m"), 9.0, ("monitor", "tv")),
    Leaf(
        "electronics",
        "tv",
        ("43 inch", "50 inch", "55 inch", "65 inch"),
        600.0,
        ("hdmi cable", "soundbar", "tv mount"),
    ),
    Leaf("electronics", "soundbar", ("2.1", "5.1", "dolby atmos"), 220.0, ("tv",)),
    Leaf("electronics", "tv mount", ("fixed", "tilt", "full motion"), 30.0, ("tv",)),
    Leaf("electronics", "earbuds", ("anc", "sport", "gaming"), 90.0, ("smartphone",)),
    Leaf("electronics", "headphones", ("over-ear", "on-ear", "anc", "wired"), 150.0, ("headphone stand",)),
    Leaf("electronics", "headphone stand", ("wood", "aluminium"), 20.0, ("headphones",)),
    Leaf(
        "electronics",
        "camera",
        ("24mp", "32mp", "4k video", "kit lens"),
        800.0,
        ("memory card", "tripod", "camera bag"),
    ),
    Leaf("electronics", "memory card", _GB, 18.0, ("camera",)),
    Leaf("electronics", "tripod", ("travel", "carbon", "mini"), 45.0, ("camera",)),
    Leaf("electronics", "camera bag", ("sling", "backpack", "shoulder"), 40.0, ("camera",)),
    Leaf("electronics", "smartwatch", ("41mm", "45mm", "gps", "lte"), 250.0, ("watch strap", "charger")),
    Leaf("electronics", "watch strap", ("silicone", "leather", "metal"), 15.0, ("smartwatch",)),
    Leaf("fashion", "running shoes", _SHOE, 95.0, ("sport socks", "running shorts")),
    Leaf("fashion", "sport socks", ("3 pack", "6 pack", "ankle"), 12.0, ("running shoes",)),
    Leaf("fashion", "running shorts", _SIZES, 30.0, ("running shoes", "t-shirt")),
    Leaf("fashion", "sneakers", _SHOE, 80.0, ("sport socks",)),
    Leaf("fashion", "jeans", ("w30 l32", "w32 l32", "w34 l32", "slim", "regular"), 60.0, ("t-shirt", "belt")),
    Leaf("fashion", "belt", ("90cm", "100cm", "110cm"), 25.0, ("jeans",)),
    Leaf("fashion", "t-shirt", _SIZES, 18.0, ("jeans", "running shorts")),
    Leaf("fashion", "winter jacket", _SIZES, 160.0, ("scarf", "gloves")),
    Leaf("fashion", "scarf", ("wool", "cashmere", "knit"), 25.0, ("winter jacket", "gloves")),
    Leaf("fashion", "gloves", ("s", "m", "l", "touchscreen"), 20.0, ("winter jacket", "scarf")),
    Leaf("fashion", "dress", _SIZES, 70.0, ("handbag", "heels")),
    Leaf("fashion", "handbag", ("leather", "tote", "crossbody"), 110.0, ("dress", "wallet")),
    Leaf("fashion", "heels", _SHOE, 85.0, ("dress",)),
    Leaf("fashion", "wallet", ("leather", "slim", "rfid"), 35.0, ("handbag", "belt")),
    Leaf("fashion", "backpack", ("20l", "30l", "40l"), 55.0, ("water bottle", "laptop")),
    Leaf("fashion", "sunglasses", ("polarized", "aviator", "sport"), 70.0, ("sunglasses case",)),
    Leaf("fashion", "sunglasses case", ("hard", "soft"), 10.0, ("sunglasses",)),
    Leaf(
        "home",
        "coffee machine",
        ("espresso", "capsule", "drip", "bean to cup"),
        300.0,
        ("coffee beans", "milk frother", "mug"),
    ),
    Leaf("home", "coffee beans", ("250g", "500g", "1kg"), 14.0, ("coffee machine", "coffee grinder")),
    Leaf("home", "coffee grinder", ("burr", "blade", "manual"), 60.0, ("coffee beans", "coffee machine")),
    Leaf("home", "milk frother", ("handheld", "electric"), 30.0, ("coffee machine",)),
    Leaf("home", "mug", ("350ml", "450ml", "set of 4"), 12.0, ("coffee machine", "kettle")),
    Leaf("home", "kettle", _VOL, 45.0, ("mug", "tea")),
    Leaf("home", "tea", ("green", "black", "herbal"), 8.0, ("kettle", "mug")),
    Leaf("home", "blender", _WATTS, 90.0, ("blender bottle",)),
    Leaf("home", "blender bottle", ("500ml", "700ml"), 12.0, ("blender",)),
    Leaf(
        "home", "frying pan", ("24cm", "28cm", "32cm", "non-stick", "cast iron"), 40.0, ("spatula", "pan lid")
    ),
    Leaf("home", "spatula", ("silicone", "wooden", "steel"), 9.0, ("frying pan",)),
    Leaf("home", "pan lid", ("24cm", "28cm", "32cm"), 15.0, ("frying pan",)),
    Leaf(
        "home",
        "vacuum cleaner",
        ("cordless", "robot", "bagless", _WATTS[2]),
        250.0,
        ("vacuum bags", "vacuum filter"),
    ),
    Leaf("home", "vacuum bags", ("5 pack", "10 pack"), 12.0, ("vacuum cleaner",)),
    Leaf("home", "vacuum filter", ("hepa", "foam"), 15.0, ("vacuum cleaner",)),
    Leaf("home", "desk lamp", ("led", "dimmable", "clamp"), 35.0, ("light bulb",)),
    Leaf("home", "light bulb", ("e27", "e14", "gu10", "smart"), 7.0, ("desk lamp",)),
    Leaf("home", "pillow", ("memory foam", "down", "50x70"), 30.0, ("bed sheets",)),
    Leaf("home", "bed sheets", ("single", "double", "king"), 45.0, ("pillow", "duvet")),
    Leaf("home", "duvet", ("single", "double", "king", "summer"), 80.0, ("bed sheets",)),
    Leaf(
        "sports",
        "bicycle",
        ("26 inch", "28 inch", "29 inch", "gravel", "city"),
        650.0,
        ("bike helmet", "bike lock", "bike light"),
    ),
    Leaf("sports", "bike helmet", ("s", "m", "l", "mips"), 60.0, ("bicycle",)),
    Leaf("sports", "bike lock", ("u-lock", "chain", "folding"), 40.0, ("bicycle",)),
    Leaf("sports", "bike light", ("front", "rear", "set"), 25.0, ("bicycle",)),
    Leaf("sports", "yoga mat", ("4mm", "6mm", "8mm"), 30.0, ("yoga block", "water bottle")),
    Leaf("sports", "yoga block", ("cork", "foam"), 12.0, ("yoga mat",)),
    Leaf("sports", "dumbbells", ("2kg", "5kg", "10kg", "adjustable"), 55.0, ("weight bench", "gym gloves")),
    Leaf("sports", "weight bench", ("flat", "adjustable", "foldable"), 150.0, ("dumbbells",)),
    Leaf("sports", "gym gloves", ("s", "m", "l"), 18.0, ("dumbbells",)),
    Leaf("sports", "tent", ("2 person", "3 person", "4 person"), 180.0, ("sleeping bag", "camping stove")),
    Leaf("sports", "sleeping bag", ("summer", "3 season", "winter"), 70.0, ("tent", "sleeping pad")),
    Leaf("sports", "sleeping pad", ("inflatable", "foam"), 45.0, ("sleeping bag", "tent")),
    Leaf("sports", "camping stove", ("gas", "multi fuel"), 50.0, ("tent", "gas canister")),
    Leaf("sports", "gas canister", ("230g", "450g"), 8.0, ("camping stove",)),
    Leaf("sports", "water bottle", ("500ml", "750ml", "1l", "insulated"), 20.0, ("backpack", "yoga mat")),
    Leaf("toys", "building blocks", ("500 pieces", "1000 pieces", "2000 pieces"), 60.0, ("storage box",)),
    Leaf("toys", "storage box", ("small", "large"), 20.0, ("building blocks",)),
    Leaf("toys", "board game", ("family", "strategy", "party"), 35.0, ("card sleeves",)),
    Leaf("toys", "card sleeves", ("100 pack", "200 pack"), 8.0, ("board game",)),
    Leaf("toys", "rc car", ("1:10", "1:16", "1:24"), 75.0, ("rc battery",)),
    Leaf("toys", "rc battery", ("2000mah", "5000mah"), 25.0, ("rc car",)),
    Leaf("beauty", "shampoo", ("250ml", "400ml", "1l"), 9.0, ("conditioner",)),
    Leaf("beauty", "conditioner", ("250ml", "400ml", "1l"), 9.0, ("shampoo",)),
    Leaf("beauty", "hair dryer", ("1800w", "2000w", "2200w"), 60.0, ("hair brush",)),
    Leaf("beauty", "hair brush", ("paddle", "round", "detangling"), 12.0, ("hair dryer",)),
    Leaf("beauty", "electric toothbrush", ("sonic", "oscillating"), 70.0, ("toothbrush heads",)),
    Leaf("beauty", "toothbrush heads", ("4 pack", "8 pack"), 20.0, ("electric toothbrush",)),
    Leaf(
        "garden",
        "lawn mower",
        ("cordless", "petrol", "robot", "32cm", "42cm"),
        300.0,
        ("garden gloves", "grass trimmer"),
    ),
    Leaf("garden", "grass trimmer", ("cordless", "electric"), 90.0, ("lawn mower", "trimmer line")),
    Leaf("garden", "trimmer line", ("1.6mm", "2mm", "2.4mm"), 10.0, ("grass trimmer",)),
    Leaf("garden", "garden gloves", ("s", "m", "l"), 10.0, ("lawn mower",)),
    Leaf("garden", "garden hose", ("15m", "25m", "50m"), 35.0, ("hose nozzle",)),
    Leaf("garden", "hose nozzle", ("8 pattern", "brass"), 12.0, ("garden hose",)),
)

COLOURS = (
    "black",
    "white",
    "grey",
    "silver",
    "blue",
    "navy",
    "red",
    "green",
    "beige",
    "brown",
    "pink",
    "yellow",
)

# Brand names are made from these syllables (pseudo-words, so no real brand is implied).
SYLLABLES = (
    "ka",
    "ro",
    "vex",
    "ta",
    "ma",
    "lin",
    "zo",
    "pri",
    "nu",
    "sol",
    "der",
    "qua",
    "vi",
    "tor",
    "el",
    "mo",
    "rex",
    "sa",
    "no",
    "ly",
    "fen",
    "gar",
    "hu",
    "ix",
    "jo",
    "bel",
    "cor",
    "dax",
    "ev",
    "ora",
)
SERIES_LETTERS = ("x", "pro", "s", "z", "air", "max", "neo", "go", "one", "ultra", "lite", "plus")

# Seller phrasing: each seller has a habit, which is what makes titles of one product differ.
PREFIXES = ("new", "original", "hot sale", "2026", "genuine", "official", "free shipping", "sale", "best")
SUFFIXES = (
    "fast delivery",
    "warranty",
    "in stock",
    "top quality",
    "free returns",
    "gift",
    "eu version",
    "with box",
    "limited",
)
# Query words a shopper adds that no title contains.
QUERY_FILLERS = ("cheap", "best", "buy", "for men", "for women", "for kids", "review", "deal", "2026")
