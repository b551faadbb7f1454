"""Synthetic people for demos, tests and benchmarks: Faker names and Pillow-drawn portraits.

Never real people. Deterministic for a given seed, so a failing test or benchmark can be rerun.
"""

from __future__ import annotations

import datetime as dt
import io
import random
from typing import Any

from faker import Faker
from PIL import Image, ImageDraw

from . import handling, schemas

SKIN = [(241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (255, 219, 172), (92, 58, 33)]
HAIR = [(20, 20, 20), (90, 60, 30), (200, 170, 90), (150, 40, 20), (120, 120, 120)]


def portrait(seed: int, size: tuple[int, int] = (240, 300)) -> bytes:
    """A drawn placeholder head-and-shoulders, JPEG bytes. Obviously not a photo of anyone."""
    rnd = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, tuple(rnd.randint(170, 235) for _ in range(3)))
    d = ImageDraw.Draw(img)
    skin, hair = rnd.choice(SKIN), rnd.choice(HAIR)
    shirt = tuple(rnd.randint(20, 200) for _ in range(3))
    d.ellipse([w * 0.1, h * 0.7, w * 0.9, h * 1.3], fill=shirt)
    d.rectangle([w * 0.42, h * 0.55, w * 0.58, h * 0.75], fill=skin)
    d.ellipse([w * 0.25, h * 0.15, w * 0.75, h * 0.65], fill=skin)
    d.chord([w * 0.23, h * 0.1, w * 0.77, h * 0.5], 180, 360, fill=hair)
    for ex in (0.4, 0.6):
        d.ellipse([w * ex - 6, h * 0.38 - 4, w * ex + 6, h * 0.38 + 4], fill=(40, 40, 40))
    d.arc([w * 0.4, h * 0.45, w * 0.6, h * 0.58], 20, 160, fill=(120, 40, 40), width=3)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


#: Why a partnership holds a child's profile (the synthetic 16- and 17-year-olds carry one).
MINOR_REASONS = [
    "Repeat thefts from member stores; parents informed; police youth liaison officer aware",
    "Threatening staff with a weapon; held on police advice while a youth referral is made",
    "Excluded after repeated abuse to staff; reviewed with the youth offending team",
]


class People:
    def __init__(self, seed: int = 0, locale: str = "en_GB") -> None:
        self.rnd = random.Random(seed)
        self.fake = Faker(locale)
        self.fake.seed_instance(seed)

    def fields(self, places: list[str] | None = None) -> dict[str, Any]:
        """Input fields for one synthetic profile (the shape `discnode profile import` takes)."""
        rnd, fake = self.rnd, self.fake
        today = dt.date.today()
        gender = rnd.choice(["male", "male", "female", "unknown"])
        id_sought = rnd.random() < 0.15
        first = "" if id_sought else (fake.first_name_male() if gender == "male" else fake.first_name_female())
        last = "" if id_sought else fake.last_name()
        places = places or [f"{fake.street_name()} {rnd.choice(['Co-op', 'Boots', 'Tesco', 'The Crown'])}"
                            for _ in range(3)]
        incidents = []
        for _ in range(rnd.randint(0, 4)):
            when = today - dt.timedelta(days=rnd.randint(1, 700))
            incidents.append({"date": when.isoformat(), "place": rnd.choice(places),
                              "type": rnd.choice(schemas.codes("incident_type")),
                              "summary": fake.sentence(nb_words=8)})
        last_seen = max((i["date"] for i in incidents), default=None)
        fields: dict[str, Any] = {
            "status": "id-sought" if id_sought else "identified",
            "first_name": first, "last_name": last,
            "aliases": [fake.first_name()] if not id_sought and rnd.random() < 0.3 else [],
            "gender": gender,
            "ethnicity": rnd.choice(schemas.codes("ethnicity")),
            "build": rnd.choice(schemas.codes("build")),
            "height_cm": rnd.randint(150, 200),
            "tags": sorted(rnd.sample(schemas.codes("offence_tag"), rnd.randint(0, 3))),
            "marks": rnd.choice(["", "", "tattoo on left forearm", "scar above right eye", "pierced eyebrow"]),
            "notes": "",
            "incidents": incidents,
            "last_seen": last_seen,
            "local_only": rnd.random() < 0.05,
        }
        if id_sought:
            low = rnd.randint(16, 50)
            fields.update(age_min=low, age_max=low + 10)
        else:
            born = today - dt.timedelta(days=rnd.randint(16 * 365, 70 * 365))
            fields["dob"] = born.isoformat()
        if handling.is_minor(fields, dt.datetime.now(dt.timezone.utc).date()):
            # Picked without drawing from rnd: every later person stays as it was for a seed.
            fields["minor_reason"] = MINOR_REASONS[len(first) % len(MINOR_REASONS)]
        if rnd.random() < 0.2:
            start = today - dt.timedelta(days=rnd.randint(0, 300))
            fields["exclusion"] = {"from": start.isoformat(),
                                   "until": (start + dt.timedelta(days=rnd.choice([180, 365, 730]))).isoformat(),
                                   "where": "all member premises"}
        return fields
