"""Name and address pools for the synthetic base, and the cosmetic variants legacy systems produce.

Everything here is drawn from a numpy ``Generator`` handed in by the caller, so a seed fixes every string.
Addresses use real California city names with made-up streets; phone numbers use the fictional 555 exchange
and e-mail addresses the reserved ``.example`` top-level domain (RFC 2606), so nothing reaches a real person.

Residential premises must never collide by accident (two unrelated people with the same name at the same
address would merge into one portfolio under the name + address rule), so :func:`residential_address` maps a
customer's global index to a street slot through a bijection instead of drawing at random.
"""
from __future__ import annotations

import math

import numpy as np

FIRST_NAMES = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan Joseph "
    "Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Sandra Mark Margaret "
    "Donald Ashley Steven Kimberly Andrew Emily Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian "
    "Melissa George Deborah Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Amy "
    "Jacob Kathleen Gary Angela Nicholas Shirley Eric Brenda Jonathan Emma Stephen Anna Larry Pamela Justin "
    "Nicole Scott Samantha Brandon Katherine Benjamin Christine Samuel Helen Gregory Debra Alexander Rachel "
    "Patrick Carolyn Frank Janet Raymond Maria Jack Olivia Dennis Heather Jerry Diane Tyler Julie Aaron Joyce "
    "Jose Victoria Adam Ruth Nathan Virginia Henry Lauren Zachary Kelly Douglas Christina Peter Joan Kyle "
    "Evelyn Noah Judith Ethan Andrea Jeremy Hannah Walter Megan Christian Cheryl Keith Jacqueline Roger Martha "
    "Terry Madison Austin Teresa Sean Gloria Gerald Sara Carl Janice Harold Ann Dylan Kathryn Arthur Abigail "
    "Lawrence Sophia Jordan Frances Jesse Jean Bryan Alice Billy Judy Bruce Isabella Gabriel Julia Joe Grace "
    "Logan Amber Alan Denise Juan Danielle Albert Marilyn Willie Beverly Elijah Charlotte Wayne Natalie Randy "
    "Theresa Vincent Diana Mason Brittany Roy Doris Ralph Kayla Bobby Alexis Russell Lori Bradley Marie Philip "
    "Wei Mei Jun Ling Minh Thanh Linh Hoang Priya Arjun Anil Deepa Sanjay Kavita Carlos Lucia Miguel Sofia "
    "Javier Carmen Luis Rosa Diego Elena Mateo Valeria Hiroshi Yuki Kenji Aiko Jin Soo Min Ji Tuan Lan Omar Leila"
).split()

LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis "
    "Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall "
    "Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes "
    "Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard "
    "Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price "
    "Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell "
    "Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton "
    "Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar "
    "Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells "
    "Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez "
    "Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone "
    "Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan "
    "Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce Vazquez Hansen Peters Santos Hart Bradley "
    "Knight Elliott Cunningham Duncan Armstrong Hudson Carroll Lane Riley Andrews Alvarado Ray Delgado Berry "
    "Perkins Hoffman Johnston Matthews Pena Richards Contreras Willis Carpenter Lawrence Sandoval Wang Li Zhang "
    "Liu Huang Wu Zhou Xu Sun Ma Zhu Hu Lin Le Pham Vu Vo Dang Bui Do Ho Ngo Duong Ly Shah Singh Kumar Gupta "
    "Tanaka Suzuki Watanabe Yamamoto Nakamura Park Choi Jung Kang Cho Yoon Jang Lim Han Oh Seo Shin Kwon"
).split()

STREET_NAMES = (
    "Main Oak Maple Cedar Pine Elm Walnut Sycamore Willow Birch Chestnut Magnolia Laurel Juniper Cypress "
    "Redwood Sequoia Madrone Manzanita Olive Orange Lemon Almond Peach Cherry Vine Grove Orchard Meadow Valley "
    "Hill Ridge Canyon Mesa Vista Sierra Mission Rancho Park Lake River Creek Spring Bay Harbor Ocean Shore "
    "Sunset Sunrise Highland Prospect Fairview Pleasant Center Church School Mill Market Commerce Industrial "
    "Railroad Depot Station Airport Campus College University Washington Lincoln Jefferson Madison Monroe "
    "Adams Jackson Franklin Grant Hamilton Kennedy Roosevelt Wilson Carson Fremont Portola Serra Anza Cabrillo "
    "Alvarado Figueroa Castro Sepulveda Pico Vallejo Bernal Estrada Alameda Arroyo Buena_Ventura Camino Cresta "
    "Del_Mar El_Dorado Hacienda La_Paz Loma Los_Robles Mar_Vista Paloma Palomar Primavera Rio_Verde Santa_Rita "
    "Shasta Tahoe Whitney Lassen Diablo Tamalpais Rainier Hood Baker Wren Robin Lark Finch Heron Egret Falcon "
    "Hawk Eagle Quail Dove Poppy Lupine Sage Yarrow Aster Iris Lilac Jasmine Dahlia Camellia Azalea Gardenia"
).split()
STREET_NAMES = tuple(w.replace("_", " ") for w in STREET_NAMES)  # "Del_Mar" -> "Del Mar"

STREET_TYPES = ("Street", "Avenue", "Road", "Drive", "Lane", "Court", "Boulevard", "Way", "Place", "Circle")
STREET_ABBREV = {"Street": "St", "Avenue": "Ave", "Road": "Rd", "Drive": "Dr", "Lane": "Ln", "Court": "Ct",
                 "Boulevard": "Blvd", "Way": "Way", "Place": "Pl", "Circle": "Cir"}

# (city, first ZIP of the city's range): real city names, plausible ZIP prefixes.
CITIES = (
    ("Fresno", 93650), ("Bakersfield", 93301), ("Visalia", 93277), ("Modesto", 95350), ("Stockton", 95202),
    ("Sacramento", 95811), ("Merced", 95340), ("Hanford", 93230), ("Tulare", 93274), ("Madera", 93637),
    ("Clovis", 93611), ("Porterville", 93257), ("Turlock", 95380), ("Lodi", 95240), ("Tracy", 95376),
    ("Manteca", 95336), ("Delano", 93215), ("Selma", 93662), ("Reedley", 93654), ("Sanger", 93657),
    ("Lemoore", 93245), ("Dinuba", 93618), ("Atwater", 95301), ("Los Banos", 93635), ("Chowchilla", 93610),
    ("Kingsburg", 93631), ("Oakdale", 95361), ("Ceres", 95307), ("Riverbank", 95367), ("Patterson", 95363),
)

ADDRESS_STREETS = len(STREET_NAMES) * len(STREET_TYPES)
RESIDENTIAL_NUMBERS = 9899  # house numbers 100..9998
RESIDENTIAL_SLOTS = len(CITIES) * ADDRESS_STREETS * RESIDENTIAL_NUMBERS

COMPANY_WORDS = (
    "Summit Pacific Golden Redwood Harbor Cascade Sierra Mesa Coastal Valley Granite Cedar Pioneer Silver "
    "Meridian Northstar Evergreen Sunrise Horizon Keystone Liberty Heritage Frontier Landmark Pinnacle Crescent "
    "Alder Bayview Sequoia Condor Delta Sterling Monarch Beacon Anchor Vanguard Cornerstone Trident Orchard "
    "Canyon Tahoe Shasta Yosemite Mariposa Fresno Central Western Golden-State Heartland Riverside Lakeside"
).split()

REALTY_WORDS = ("Realty", "Properties", "Property Group", "Real Estate", "Land Company", "Development",
                "Investments", "Commercial Properties", "Asset Management")
HOLDING_WORDS = ("Holdings", "Capital", "Partners", "Ventures", "Equity", "Group")
SUFFIXES = ("LLC", "Inc.", "LP", "Corp.", "Co.", "LLC", "LLC", "Inc.")

TRADE_WORDS = {
    "office": ("Office Park", "Professional Center", "Business Center", "Tower", "Plaza Offices", "Law Offices"),
    "retail": ("Shopping Center", "Marketplace", "Outlet", "Hardware", "Furniture", "Boutique", "Pharmacy"),
    "restaurant": ("Grill", "Cafe", "Taqueria", "Diner", "Bistro", "Pizzeria", "Noodle House", "Steakhouse"),
    "grocery": ("Market", "Foods", "Grocery", "Supermarket", "Fresh Market"),
    "hotel": ("Inn", "Hotel", "Suites", "Lodge", "Motor Inn"),
    "warehouse": ("Distribution Center", "Warehouse", "Logistics Center", "Storage"),
    "medical_office": ("Medical Group", "Dental", "Family Clinic", "Urgent Care", "Physical Therapy"),
    "auto_service": ("Auto Repair", "Tire & Service", "Car Wash", "Collision Center", "Motors"),
    "manufacturing": ("Manufacturing", "Fabrication", "Machine Works", "Plastics", "Metal Products"),
    "food_processing": ("Packing", "Food Processing", "Creamery", "Canning", "Nut Processors"),
    "cold_storage": ("Cold Storage", "Refrigerated Warehousing", "Ice & Cold Storage"),
    "data_center": ("Data Center", "Colocation", "Cloud Campus"),
    "chemical": ("Chemical", "Fertilizer", "Industrial Gases", "Coatings"),
}

PUBLIC_NAMES = {
    "hospital": ("{city} Community Hospital", "{city} Regional Medical Center", "St. {saint} Hospital",
                 "{city} Memorial Hospital"),
    "water_treatment": ("{city} Water Treatment Plant", "{city} Wastewater Reclamation Facility",
                        "{city} Water Pump Station {n}"),
    "school": ("{street} Elementary School", "{street} Middle School", "{city} High School",
               "{street} Elementary School", "{city} Adult School"),
    "fire_police": ("{city} Fire Station {n}", "{city} Police Department", "{city} Fire Station {n}",
                    "{city} Emergency Operations Center"),
    "government": ("{city} City Hall", "{city} Public Library", "{city} Corporation Yard",
                   "{city} Community Center"),
}
SAINTS = ("Agnes", "Joseph", "Mary", "Luke", "Francis", "Elizabeth", "Vincent", "Jude", "Clare", "Anthony")

REGISTERED_AGENTS = (
    ("CT Corporation System", "330 N Brand Blvd Suite 700, Glendale, CA 91203"),
    ("CSC Lawyers Incorporating Service", "2710 Gateway Oaks Dr Suite 150N, Sacramento, CA 95833"),
    ("Registered Agent Solutions", "1220 S Street Suite 150, Sacramento, CA 95811"),
)

EMAIL_DOMAINS = ("mail.example", "inbox.example", "webmail.example", "home.example", "post.example")
AREA_CODES = (559, 661, 209, 916, 530)


def pick(rng: np.random.Generator, pool, size=None):
    """A uniform choice from a tuple of strings (numpy's choice would turn them into ``np.str_``)."""
    if size is None:
        return pool[int(rng.integers(len(pool)))]
    return [pool[i] for i in rng.integers(len(pool), size=size)]


def person_name(rng: np.random.Generator) -> str:
    return f"{pick(rng, FIRST_NAMES)} {pick(rng, LAST_NAMES)}"


def person_names(rng: np.random.Generator, n: int) -> list[str]:
    first = rng.integers(len(FIRST_NAMES), size=n)
    last = rng.integers(len(LAST_NAMES), size=n)
    return [f"{FIRST_NAMES[a]} {LAST_NAMES[b]}" for a, b in zip(first.tolist(), last.tolist())]


def city_line(city_index: int, rng: np.random.Generator) -> str:
    city, zip0 = CITIES[city_index]
    return f"{city}, CA {zip0 + int(rng.integers(0, 12)):05d}"


def street(index: int) -> str:
    """Street ``index`` of ``ADDRESS_STREETS``, spelled out (``"Oak Street"``)."""
    name = STREET_NAMES[index // len(STREET_TYPES)]
    return f"{name} {STREET_TYPES[index % len(STREET_TYPES)]}"


class ResidentialSlots:
    """A seed-dependent bijection from a customer's global index to a distinct street address.

    ``slot = (a * i + b) mod RESIDENTIAL_SLOTS`` with ``a`` coprime to the modulus is a permutation, so no two
    customers of one base share a premise (up to ~2.6e8 customers), while neighbouring customers still land
    on unrelated streets.
    """

    def __init__(self, seed_rng: np.random.Generator):
        m = RESIDENTIAL_SLOTS
        a = int(seed_rng.integers(m // 3, m - 1))
        while math.gcd(a, m) != 1:
            a += 1
        self.a = a
        self.b = int(seed_rng.integers(0, m))

    def address(self, customer_index: int) -> str:
        slot = (self.a * customer_index + self.b) % RESIDENTIAL_SLOTS
        slot, number = divmod(slot, RESIDENTIAL_NUMBERS)
        city, st = divmod(slot, ADDRESS_STREETS)
        zip0 = CITIES[city][1] + (number * 7 + st) % 12
        return f"{100 + number} {street(st)}, {CITIES[city][0]}, CA {zip0:05d}"


def random_street_address(rng: np.random.Generator, *, suite: bool = False) -> str:
    number = int(rng.integers(10, 20000))
    st = street(int(rng.integers(ADDRESS_STREETS)))
    unit = f" Suite {int(rng.integers(1, 40)) * 10 + int(rng.integers(0, 2)) * 100}" if suite else ""
    return f"{number} {st}{unit}, {city_line(int(rng.integers(len(CITIES))), rng)}"


def company_base(rng: np.random.Generator) -> str:
    """A distinctive two-word stem such as ``"Summit Harbor"`` that related entities share."""
    a = int(rng.integers(len(COMPANY_WORDS)))
    b = (a + 1 + int(rng.integers(len(COMPANY_WORDS) - 1))) % len(COMPANY_WORDS)  # never the same word twice
    return f"{COMPANY_WORDS[a]} {COMPANY_WORDS[b]}"


def suffix(rng: np.random.Generator) -> str:
    return pick(rng, SUFFIXES)


def email_for(name: str, rng: np.random.Generator, domain: str | None = None) -> str:
    local = "".join(ch for ch in name.lower().replace(" ", ".") if ch.isalnum() or ch == ".").strip(".")
    if rng.random() < 0.5:
        local += str(int(rng.integers(1, 99)))
    return f"{local}@{domain or pick(rng, EMAIL_DOMAINS)}"


def company_domain(company: str) -> str:
    word = "".join(ch for ch in company.lower() if ch.isalnum())[:24] or "company"
    return f"{word}.example"


def phone(rng: np.random.Generator) -> str:
    return f"+1{pick(rng, AREA_CODES)}555{int(rng.integers(0, 10000)):04d}"


# --- cosmetic variants: what two legacy systems make of one owner -------------------------------------------

_SUFFIX_SPELLINGS = {
    "LLC": ("LLC", "L.L.C.", "L.L.C", "llc"),
    "Inc.": ("Inc.", "Inc", "INC", "Incorporated"),
    "LP": ("LP", "L.P."),
    "Corp.": ("Corp.", "Corp", "Corporation", "CORP"),
    "Co.": ("Co.", "Co", "Company"),
}


def name_variant(name: str, rng: np.random.Generator) -> str:
    """The same legal name as another clerk would key it: case, punctuation, suffix spelling, a comma.

    Only changes that a normalizer folding case, punctuation and legal-suffix spellings undoes.
    """
    words = name.split(" ")
    last = words[-1]
    if last in _SUFFIX_SPELLINGS:
        words[-1] = pick(rng, _SUFFIX_SPELLINGS[last])
        if rng.random() < 0.4:
            words[-2] = words[-2] + ","
    out = " ".join(words)
    r = rng.random()
    if r < 0.3:
        out = out.upper()
    elif r < 0.45:
        out = out.lower()
    if rng.random() < 0.2:
        out = out.replace(" ", "  ", 1)
    return out


def address_variant(address: str, rng: np.random.Generator) -> str:
    """The same mailing address keyed differently: street-type and suite abbreviations, case, commas."""
    out = address
    for long, short in STREET_ABBREV.items():
        if f" {long}" in out and long != short:
            choice = rng.random()
            if choice < 0.45:
                out = out.replace(f" {long}", f" {short}", 1)
            elif choice < 0.75:
                out = out.replace(f" {long}", f" {short}.", 1)
            break
    if " Suite " in out and rng.random() < 0.6:
        out = out.replace(" Suite ", pick(rng, (" Ste ", " Ste. ", " STE ")), 1)
    if rng.random() < 0.3:
        out = out.replace(",", "", 1)
    r = rng.random()
    if r < 0.3:
        out = out.upper()
    elif r < 0.4:
        out = out.lower()
    return out
