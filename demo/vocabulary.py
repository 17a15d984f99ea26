"""Static word lists of the demo fashion shop: categories, brands, colours, people, places.

Everything here is invented (brands, names) so the demo can never be mistaken for real data.
Order matters: generation indexes these tuples with seeded draws, so reordering an entry
changes every world.
"""

from __future__ import annotations

from types import MappingProxyType

from demo.types import CategorySpec

STYLES: tuple[str, ...] = ("casual", "business", "evening", "sporty", "streetwear", "outdoor")

# Occasions are what descriptions mention, so items of one style read alike to a text encoder.
OCCASIONS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "casual": ("weekend brunches", "relaxed city days", "coffee with friends", "everyday wear"),
        "business": ("the office", "client meetings", "business travel", "smart workdays"),
        "evening": ("dinner dates", "cocktail parties", "weddings", "nights out"),
        "sporty": ("the gym", "morning runs", "yoga sessions", "active weekends"),
        "streetwear": ("city streets", "concerts", "skate sessions", "festival season"),
        "outdoor": ("hiking trips", "rainy commutes", "mountain weekends", "long walks"),
    }
)

_APPAREL_GENDERS = MappingProxyType({"women": 0.52, "men": 0.43, "unisex": 0.05})


def _genders(women: float, men: float, unisex: float) -> MappingProxyType[str, float]:
    return MappingProxyType({"women": women, "men": men, "unisex": unisex})


# Fields: name, item share, median EUR price, log-normal sigma, genders, styles, nouns,
# materials, title adjectives, seasons.
# fmt: off
CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "Dresses", 9.0, 59.0, 0.45, _genders(1.0, 0.0, 0.0), ("casual", "business", "evening"),
        ("Midi Dress", "Maxi Dress", "Wrap Dress", "Shirt Dress", "Slip Dress", "Mini Dress"),
        ("Cotton", "Linen", "Viscose", "Silk", "Jersey", "Satin"),
        ("Flowing", "Fitted", "Pleated", "Tiered", "Belted", "Draped"),
        ("summer", "spring", "all-season"),
    ),
    CategorySpec(
        "Shoes", 7.0, 89.0, 0.45, _genders(0.55, 0.45, 0.0), ("business", "evening", "casual"),
        ("Ankle Boots", "Loafers", "Pumps", "Sandals", "Derby Shoes", "Chelsea Boots"),
        ("Leather", "Suede", "Patent Leather", "Nubuck"),
        ("Classic", "Pointed", "Chunky", "Block-Heel", "Slim", "Lug-Sole"),
        ("all-season", "autumn", "summer"),
    ),
    CategorySpec(
        "Sneakers", 7.0, 95.0, 0.40, _genders(0.45, 0.45, 0.10), ("streetwear", "sporty", "casual"),
        ("Sneakers", "Running Shoes", "High-Top Sneakers", "Slip-On Sneakers", "Trainers"),
        ("Leather", "Mesh", "Canvas", "Suede", "Knit"),
        ("Retro", "Low-Top", "Chunky", "Lightweight", "Platform", "Minimal"),
        ("all-season", "spring", "summer"),
    ),
    CategorySpec(
        "Jeans", 7.0, 69.0, 0.35, _APPAREL_GENDERS, ("casual", "streetwear"),
        ("Jeans", "Skinny Jeans", "Straight Jeans", "Wide-Leg Jeans", "Bootcut Jeans"),
        ("Denim", "Stretch Denim", "Organic Denim", "Raw Denim"),
        ("Slim-Fit", "Relaxed", "High-Rise", "Tapered", "Distressed", "Cropped"),
        ("all-season",),
    ),
    CategorySpec(
        "T-Shirts", 8.0, 19.0, 0.40, _APPAREL_GENDERS, ("casual", "streetwear", "sporty"),
        ("T-Shirt", "Crew-Neck Tee", "V-Neck Tee", "Graphic Tee", "Longsleeve"),
        ("Cotton", "Organic Cotton", "Jersey", "Modal", "Slub Cotton"),
        ("Oversized", "Regular-Fit", "Boxy", "Slim-Fit", "Washed", "Essential"),
        ("summer", "spring", "all-season"),
    ),
    CategorySpec(
        "Shirts", 6.0, 39.0, 0.35, _APPAREL_GENDERS, ("business", "casual", "evening"),
        ("Shirt", "Oxford Shirt", "Blouse", "Overshirt", "Button-Down Shirt"),
        ("Cotton", "Poplin", "Linen", "Flannel", "Chambray", "Silk"),
        ("Tailored", "Relaxed", "Slim-Fit", "Crisp", "Cropped", "Classic"),
        ("all-season", "spring", "autumn"),
    ),
    CategorySpec(
        "Jackets", 6.0, 119.0, 0.45, _APPAREL_GENDERS, ("outdoor", "streetwear", "casual"),
        ("Jacket", "Bomber Jacket", "Denim Jacket", "Rain Jacket", "Biker Jacket", "Blazer"),
        ("Nylon", "Leather", "Denim", "Recycled Polyester", "Wool Blend", "Corduroy"),
        ("Quilted", "Water-Repellent", "Cropped", "Lightweight", "Padded", "Structured"),
        ("spring", "autumn", "all-season"),
    ),
    CategorySpec(
        "Coats", 5.0, 169.0, 0.40, _APPAREL_GENDERS, ("business", "outdoor", "casual"),
        ("Coat", "Trench Coat", "Parka", "Puffer Coat", "Wool Coat", "Peacoat"),
        ("Wool", "Cashmere Blend", "Down", "Cotton Gabardine", "Recycled Nylon"),
        ("Double-Breasted", "Longline", "Hooded", "Insulated", "Belted", "Tailored"),
        ("winter", "autumn"),
    ),
    CategorySpec(
        "Knitwear", 6.0, 59.0, 0.45, _APPAREL_GENDERS, ("casual", "business"),
        ("Jumper", "Cardigan", "Turtleneck", "Knitted Vest", "Hoodie"),
        ("Merino Wool", "Cashmere", "Cotton", "Alpaca Blend", "Lambswool"),
        ("Chunky", "Fine-Knit", "Ribbed", "Cable-Knit", "Oversized", "Cosy"),
        ("winter", "autumn"),
    ),
    CategorySpec(
        "Skirts", 4.0, 39.0, 0.40, _genders(1.0, 0.0, 0.0), ("casual", "business", "evening"),
        ("Midi Skirt", "Mini Skirt", "Pencil Skirt", "Pleated Skirt", "Wrap Skirt"),
        ("Cotton", "Satin", "Denim", "Wool Blend", "Linen"),
        ("A-Line", "Pleated", "High-Waisted", "Flared", "Fitted", "Tiered"),
        ("summer", "spring", "all-season"),
    ),
    CategorySpec(
        "Trousers", 6.0, 55.0, 0.35, _APPAREL_GENDERS, ("business", "casual"),
        ("Trousers", "Chinos", "Cargo Trousers", "Pleated Trousers", "Joggers"),
        ("Cotton Twill", "Wool Blend", "Linen", "Corduroy", "Stretch Cotton"),
        ("Tailored", "Wide-Leg", "Tapered", "Straight", "Relaxed", "Slim-Fit"),
        ("all-season", "spring", "autumn"),
    ),
    CategorySpec(
        "Shorts", 4.0, 29.0, 0.35, _APPAREL_GENDERS, ("casual", "sporty"),
        ("Shorts", "Chino Shorts", "Denim Shorts", "Bermuda Shorts", "Running Shorts"),
        ("Cotton", "Linen", "Denim", "Recycled Polyester", "Seersucker"),
        ("Relaxed", "Tailored", "Drawstring", "Cuffed", "Lightweight", "Frayed"),
        ("summer",),
    ),
    CategorySpec(
        "Swimwear", 3.0, 35.0, 0.35, _genders(0.65, 0.35, 0.0), ("casual", "sporty"),
        ("Swimsuit", "Bikini", "Swim Shorts", "Swim Trunks", "Tankini"),
        ("Recycled Nylon", "Lycra", "Quick-Dry Polyester"),
        ("Ruched", "Classic", "High-Leg", "Retro", "Sporty", "Tie-Side"),
        ("summer",),
    ),
    CategorySpec(
        "Sportswear", 5.0, 45.0, 0.40, _genders(0.5, 0.45, 0.05), ("sporty",),
        ("Leggings", "Sports Bra", "Training Top", "Track Jacket", "Running Tights"),
        ("Technical Jersey", "Recycled Polyester", "Mesh", "Elastane Blend"),
        ("Seamless", "Breathable", "Compression", "Moisture-Wicking", "Lightweight", "Reflective"),
        ("all-season",),
    ),
    CategorySpec(
        "Bags", 4.0, 79.0, 0.55, _genders(0.6, 0.1, 0.3), ("business", "evening", "casual"),
        ("Tote Bag", "Crossbody Bag", "Backpack", "Shoulder Bag", "Clutch", "Weekender"),
        ("Leather", "Canvas", "Nylon", "Vegan Leather", "Suede"),
        ("Structured", "Slouchy", "Mini", "Quilted", "Classic", "Oversized"),
        ("all-season",),
    ),
    CategorySpec(
        "Accessories", 4.0, 19.0, 0.50, _genders(0.35, 0.25, 0.4),
        ("casual", "business", "outdoor"),
        ("Scarf", "Belt", "Sunglasses", "Gloves", "Wallet", "Tie"),
        ("Wool", "Leather", "Silk", "Acetate", "Cashmere Blend"),
        ("Classic", "Slim", "Oversized", "Printed", "Woven", "Reversible"),
        ("all-season", "winter", "summer"),
    ),
    CategorySpec(
        "Jewelry", 3.0, 29.0, 0.70, _genders(0.8, 0.05, 0.15), ("evening", "casual"),
        ("Necklace", "Earrings", "Ring", "Bracelet", "Pendant"),
        ("Sterling Silver", "Gold-Plated Brass", "Stainless Steel", "Pearl"),
        ("Delicate", "Chunky", "Hammered", "Minimal", "Layered", "Statement"),
        ("all-season",),
    ),
    CategorySpec(
        "Underwear", 4.0, 15.0, 0.40, _genders(0.5, 0.5, 0.0), ("casual",),
        ("Briefs", "Boxer Shorts", "Bralette", "Socks Pack", "Lounge Set"),
        ("Cotton", "Organic Cotton", "Modal", "Bamboo Jersey", "Lace"),
        ("Seamless", "Soft-Touch", "Essential", "Breathable", "Stretch", "Classic"),
        ("all-season",),
    ),
    CategorySpec(
        "Hats", 3.0, 22.0, 0.40, _genders(0.3, 0.3, 0.4), ("casual", "streetwear", "outdoor"),
        ("Beanie", "Baseball Cap", "Bucket Hat", "Fedora", "Beret"),
        ("Wool", "Cotton Twill", "Straw", "Felt", "Recycled Polyester"),
        ("Ribbed", "Classic", "Washed", "Wide-Brim", "Embroidered", "Packable"),
        ("winter", "summer", "all-season"),
    ),
    CategorySpec(
        "Watches", 3.0, 149.0, 0.60, _genders(0.35, 0.45, 0.2), ("business", "sporty", "evening"),
        ("Watch", "Chronograph Watch", "Dive Watch", "Smartwatch", "Dress Watch"),
        ("Stainless Steel", "Titanium", "Leather-Strap", "Ceramic"),
        ("Classic", "Minimal", "Automatic", "Sport", "Slim", "Vintage"),
        ("all-season",),
    ),
)
# fmt: on

# (name, price multiplier, categories it sells or () for everything apparel-like).
BRANDS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("Linden & Co.", 1.0, ()),
    ("Nordhavn", 1.4, ()),
    ("Mira Vale", 1.1, ()),
    ("Oak & Thistle", 1.3, ()),
    ("Studio Kaya", 1.0, ()),
    ("Bellrose", 0.9, ()),
    ("Fjordline", 1.2, ()),
    ("Urban Drift", 0.8, ()),
    ("Carraway", 1.0, ()),
    ("Maison Lune", 1.8, ()),
    ("Velora", 1.5, ()),
    ("Halden", 0.7, ()),
    ("Basics Lab", 0.6, ()),
    ("Wren & Fox", 1.1, ()),
    ("Solano", 0.9, ()),
    ("Juniper Row", 1.0, ()),
    ("Sable & Stone", 1.6, ()),
    ("Tidewater", 0.8, ()),
    ("Kestrel Athletics", 1.0, ("Sneakers", "Sportswear", "Shorts", "T-Shirts", "Swimwear")),
    ("Stride Lab", 1.2, ("Sneakers", "Sportswear", "Shoes")),
    ("Atlas Outdoor", 1.3, ("Jackets", "Coats", "Hats", "Bags", "Trousers")),
    ("Kinfolk Denim", 1.2, ("Jeans", "Jackets", "Shirts", "Shorts", "Skirts")),
    ("Everly Knit", 1.1, ("Knitwear", "Hats", "Accessories")),
    ("Aurelle", 1.4, ("Jewelry", "Watches", "Accessories")),
    ("Vista Time", 1.5, ("Watches",)),
    ("Petit Marais", 1.7, ("Bags", "Accessories", "Shoes", "Jewelry")),
    ("Cobalt Street", 0.8, ("Sneakers", "T-Shirts", "Hats", "Jeans", "Jackets")),
    ("Soft Hours", 0.9, ("Underwear", "Swimwear", "Knitwear")),
)

# Title case for titles; attributes carry the lower-case form.
COLORS: tuple[str, ...] = (
    "Black", "White", "Navy", "Indigo", "Beige", "Camel", "Olive", "Burgundy", "Grey",
    "Charcoal", "Cream", "Sage", "Rust", "Sky Blue", "Blush Pink", "Forest Green", "Mustard",
    "Chocolate", "Sand", "Lilac",
)  # fmt: skip

# Title adjectives that describe a cut; descriptions reuse them so title and text agree.
FIT_BY_ADJECTIVE: MappingProxyType[str, str] = MappingProxyType(
    {
        "Slim-Fit": "a slim fit", "Relaxed": "a relaxed fit", "Oversized": "an oversized fit",
        "Boxy": "a boxy fit", "Tailored": "a tailored fit", "Regular-Fit": "a regular fit",
        "Wide-Leg": "a wide-leg cut", "Tapered": "a tapered cut", "Straight": "a straight cut",
        "Cropped": "a cropped cut", "Fitted": "a fitted silhouette", "Flowing": "a flowing cut",
        "High-Rise": "a high-rise cut", "High-Waisted": "a high-waisted cut",
        "A-Line": "an A-line silhouette", "Flared": "a flared cut", "Longline": "a longline cut",
        "Compression": "a compression fit", "Slouchy": "a slouchy shape", "Slim": "a slim profile",
    }
)  # fmt: skip
# For adjectives that say nothing about the cut.
DEFAULT_FITS: tuple[str, ...] = ("a true-to-size fit", "a comfortable fit", "a regular fit")

SEASON_PHRASES: MappingProxyType[str, str] = MappingProxyType(
    {
        "summer": "warm summer days",
        "spring": "mild spring weather",
        "autumn": "crisp autumn days",
        "winter": "cold winter months",
        "all-season": "every season of the year",
    }
)

EXTRA_TAGS: tuple[str, ...] = ("new-in", "bestseller", "sustainable", "limited-edition", "sale")

FIRST_NAMES: tuple[str, ...] = (
    "Anna", "Lukas", "Sofia", "Noah", "Emma", "Elias", "Mia", "Louis", "Hanna", "Felix",
    "Lea", "Paul", "Clara", "Jonas", "Lena", "Leon", "Marie", "Finn", "Julia", "Ben",
    "Chloe", "Hugo", "Camille", "Jules", "Alice", "Lucas", "Giulia", "Matteo", "Lucia",
    "Pablo", "Martina", "Daan", "Sanne", "Oskar", "Ida", "Maja", "Jakub", "Zofia", "Elsa",
    "Arvid", "Nora", "Theo", "Amelie", "Milan", "Freya", "Emil", "Ines", "Tomas", "Laura",
    "Victor",
)  # fmt: skip

LAST_NAMES: tuple[str, ...] = (
    "Muller", "Schmidt", "Weber", "Martin", "Bernard", "Rossi", "Garcia", "de Vries",
    "Jansen", "Nowak", "Kowalski", "Andersson", "Nielsen", "Hofmann", "Dubois", "Bianchi",
    "Lopez", "Peeters", "Berg", "Lindqvist", "Fischer", "Moreau", "Ricci", "Novak", "Bakker",
)  # fmt: skip

# (ISO 3166-1 alpha-2 code, relative share of customers).
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("DE", 0.34), ("FR", 0.12), ("NL", 0.09), ("AT", 0.07), ("CH", 0.06), ("IT", 0.08),
    ("ES", 0.07), ("PL", 0.06), ("SE", 0.05), ("BE", 0.04), ("DK", 0.02),
)  # fmt: skip

AGE_BANDS: tuple[tuple[str, float], ...] = (
    ("18-24", 0.17), ("25-34", 0.32), ("35-44", 0.24), ("45-54", 0.15), ("55-64", 0.08),
    ("65+", 0.04),
)  # fmt: skip

# Share of sessions starting in each UTC hour (European evening peak, quiet nights).
HOURLY_TRAFFIC: tuple[float, ...] = (
    0.8, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 1.8, 2.8, 3.2, 3.4, 3.6,
    4.2, 4.0, 3.6, 3.6, 4.0, 4.8, 5.8, 6.6, 6.8, 5.6, 3.6, 1.8,
)  # fmt: skip
