"""The demo's data tables: the names, places and words the platform's rows are made of."""

from __future__ import annotations

FIRST_NAMES = (
    "Ada",
    "Alan",
    "Amara",
    "Barbara",
    "Chen",
    "Dennis",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ines",
    "Joan",
    "Katherine",
    "Ken",
    "Lena",
    "Linus",
    "Margaret",
    "Mateo",
    "Niklaus",
    "Omar",
    "Priya",
    "Radia",
    "Sophie",
    "Tim",
    "Yukihiro",
    "Zhang",
)


LAST_NAMES = (
    "Allen",
    "Backus",
    "Bose",
    "Cerf",
    "Dijkstra",
    "Engelbart",
    "Goldberg",
    "Hamilton",
    "Hopper",
    "Kahn",
    "Knuth",
    "Lamport",
    "Liskov",
    "Lovelace",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Perlman",
    "Ritchie",
    "Silva",
    "Stonebraker",
    "Thompson",
    "Turing",
    "Wirth",
)


COUNTRIES = ("US", "GB", "DE", "FR", "CH", "SG", "AE", "JP", "CA", "AU", "NL", "IE", "LU", "HK")


CURRENCIES = ("USD", "USD", "EUR", "GBP", "USDC")


CHAINS = ("ethereum", "ethereum", "polygon", "avalanche", "stellar")


PROJECT_TYPES = ("equity", "debt", "real_estate", "fund", "receivables")


KYC_PROVIDERS = ("onfido", "sumsub", "jumio", "persona")


DOCUMENT_TYPES = ("passport", "national_id", "driving_licence")


ASSET_WORDS = (
    "Harbour",
    "Solar",
    "Vineyard",
    "Logistics",
    "Meridian",
    "Northwind",
    "Atlas",
    "Cedar",
    "Granite",
    "Riverside",
    "Summit",
    "Orchard",
    "Beacon",
    "Keystone",
    "Lumen",
    "Tidal",
)


TEXT_WORDS = (
    "the",
    "issuer",
    "shall",
    "token",
    "holder",
    "investor",
    "subscription",
    "agreement",
    "of",
    "and",
    "to",
    "in",
    "distribution",
    "redemption",
    "price",
    "per",
    "unit",
    "net",
    "asset",
    "value",
    "lock-up",
    "period",
    "transfer",
    "restriction",
    "jurisdiction",
    "accredited",
    "custodian",
    "wallet",
    "record",
    "date",
    "coupon",
    "interest",
    "dividend",
    "payable",
    "quarterly",
    "risk",
    "factors",
    "include",
    "liquidity",
    "market",
    "regulatory",
    "tax",
    "may",
    "not",
    "be",
    "offered",
    "or",
    "sold",
    "except",
    "pursuant",
    "exemption",
    "registration",
    "notice",
    "governing",
    "law",
    "clause",
    "section",
    "schedule",
    "annex",
    "fund",
    "property",
    "revenue",
    "yield",
    "maturity",
    "principal",
    "waterfall",
    "escrow",
    "settlement",
    "ledger",
)
