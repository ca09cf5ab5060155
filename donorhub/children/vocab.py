"""Vocabularies of partner feed contract version 1.

Every coded value the partner may send is listed here, and nothing else is accepted.
A closed list is a safeguarding control, not a convenience: a free value is a place where an
identifying detail can hide. Changing a list changes the contract (docs/feed-contract.md).
"""

from __future__ import annotations

FEED_VERSION = 1

LINE_TYPES: frozenset[str] = frozenset({"header", "child", "update", "home_stats", "exit"})

# Ordered from youngest to oldest: the release check widens a band by merging neighbours.
AGE_BANDS: tuple[str, ...] = ("0-5", "6-8", "9-11", "12-14", "15-17", "18+")

GENDERS: frozenset[str] = frozenset({"girl", "boy", "not_stated"})

STAGES: frozenset[str] = frozenset(
    {
        "sanctuary",
        "residential_care",
        "education",
        "vocational_training",
        "reintegration",
        "aftercare",
    }
)

CATEGORIES: frozenset[str] = frozenset(
    {"education", "wellbeing", "life_skills", "activities", "celebration", "programme"}
)

CONSENT_BASES: frozenset[str] = frozenset({"guardian_and_child", "cwc_order", "legal_exemption"})

INTERESTS: frozenset[str] = frozenset(
    {
        "drawing",
        "painting",
        "crafts",
        "embroidery",
        "sewing",
        "dance",
        "singing",
        "music",
        "theatre",
        "reading",
        "writing_stories",
        "poetry",
        "mathematics",
        "science",
        "english",
        "computers",
        "cooking",
        "gardening",
        "animals",
        "nature",
        "yoga",
        "running",
        "football",
        "cricket",
        "kabaddi",
        "kho_kho",
        "badminton",
        "chess",
        "carrom",
        "volleyball",
    }
)

# DonorHub owns the words a milestone becomes; the partner only sends the code, so no
# partner-written detail reaches a sponsor through a milestone. Each sentence is a predicate
# for a neutral subject: the renderer writes "{alias} " + sentence + ".".
MILESTONE_SENTENCES: dict[str, str] = {
    "enrolled_in_school": "enrolled in school",
    "attended_every_class": "attended every single class",
    "passed_term_exams": "passed the term exams",
    "moved_up_a_class": "moved up a class",
    "started_vocational_course": "started a vocational course",
    "completed_vocational_course": "completed a vocational course",
    "learned_new_skill": "learned a new skill",
    "joined_sports_team": "joined a sports team",
    "won_a_competition": "won a competition",
    "performed_in_event": "performed in an event",
    "reading_milestone": "reached a new reading milestone",
    "leadership_role": "took on a leadership role",
    "helped_younger_children": "helped look after the younger children",
    "celebrated_festival": "celebrated a festival with friends",
    "went_on_outing": "went on an outing",
    "started_savings": "started saving money",
    "first_job": "started a first job",
    "moved_to_aftercare": "took the next step into aftercare",
}

MILESTONES: frozenset[str] = frozenset(MILESTONE_SENTENCES)

# The 28 states and 8 union territories of India, by the English names in official use.
# Spelling is exact (case and spaces): the partner's exporter must use these strings.
STATES: frozenset[str] = frozenset(
    {
        "Andhra Pradesh",
        "Arunachal Pradesh",
        "Assam",
        "Bihar",
        "Chhattisgarh",
        "Goa",
        "Gujarat",
        "Haryana",
        "Himachal Pradesh",
        "Jharkhand",
        "Karnataka",
        "Kerala",
        "Madhya Pradesh",
        "Maharashtra",
        "Manipur",
        "Meghalaya",
        "Mizoram",
        "Nagaland",
        "Odisha",
        "Punjab",
        "Rajasthan",
        "Sikkim",
        "Tamil Nadu",
        "Telangana",
        "Tripura",
        "Uttar Pradesh",
        "Uttarakhand",
        "West Bengal",
    }
)
UNION_TERRITORIES: frozenset[str] = frozenset(
    {
        "Andaman and Nicobar Islands",
        "Chandigarh",
        "Dadra and Nagar Haveli and Daman and Diu",
        "Delhi",
        "Jammu and Kashmir",
        "Ladakh",
        "Lakshadweep",
        "Puducherry",
    }
)
REGIONS: frozenset[str] = STATES | UNION_TERRITORIES

MAX_INTERESTS = 5
MAX_MILESTONES = 5
