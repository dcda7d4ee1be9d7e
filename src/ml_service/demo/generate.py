"""Seeded generator of realistic, learnable Totara export folders (spec §5) for demos, tests and benchmarks."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml_service.data.csvio import php_csv_field, php_csv_line
from ml_service.data.tenant import ITEM_TYPES

COMPLETED_FLAG = "export_completed"
# Fixed "now" of every generated export, so output never depends on the clock: 2024-06-01 00:00:00 UTC.
EXPORT_TIME = 1_717_200_000
WEEK = 7 * 24 * 3600
INTERACTIONS_PERIOD_WEEKS = 16  # Totara's default window for Engage interactions (spec §5.3)

USER_HEADER = (
    "user_id", "lang", "city", "country", "interests", "asp_position", "positions", "organisations",
    "competencies_scale", "badges", "description",
)
INTERACTION_HEADER = ("user_id", "item_id", "rating", "timestamp")

# Share of each item type in the catalogue, in ITEM_TYPES order.
TYPE_SHARES = np.array([0.22, 0.10, 0.35, 0.15, 0.18])
COURSE, WORKSPACE, ARTICLE, MICROLEARNING, PLAYLIST = range(5)

# Languages: Totara code, country weights, share of users, share of items.
LANGUAGES: tuple[tuple[str, tuple[str, ...], float, float], ...] = (
    ("en", ("GB", "US", "AU", "NZ", "IE"), 0.50, 0.50),
    ("fr", ("FR", "BE", "CA"), 0.10, 0.10),
    ("de", ("DE", "AT", "CH"), 0.08, 0.07),
    ("es", ("ES", "MX", "AR"), 0.06, 0.05),
    ("ru", ("RU", "KZ"), 0.08, 0.08),
    ("el", ("GR", "CY"), 0.04, 0.04),
    ("ar", ("EG", "AE", "SA"), 0.04, 0.04),
    ("zh_cn", ("CN", "SG"), 0.06, 0.07),
    ("ja", ("JP",), 0.04, 0.05),
)
LANG_CODES = [lang[0] for lang in LANGUAGES]

CITIES: dict[str, tuple[str, ...]] = {
    "GB": ("London", "Manchester", "Newcastle upon Tyne"), "US": ("New York", "Chicago", "San Francisco"),
    "AU": ("Sydney", "Melbourne"), "NZ": ("Wellington", "Auckland"), "IE": ("Dublin", "Cork"),
    "FR": ("Paris", "Lyon", "Aix-en-Provence"), "BE": ("Bruxelles", "Liège"), "CA": ("Montréal", "Québec"),
    "DE": ("Berlin", "München", "Köln"), "AT": ("Wien", "Graz"), "CH": ("Zürich", "Genève"),
    "ES": ("Madrid", "Barcelona", "A Coruña"), "MX": ("Ciudad de México", "Guadalajara"), "AR": ("Buenos Aires",),
    "RU": ("Москва", "Санкт-Петербург", "Новосибирск"), "KZ": ("Алматы", "Астана"),
    "GR": ("Αθήνα", "Θεσσαλονίκη"), "CY": ("Λευκωσία",), "EG": ("القاهرة", "الإسكندرية"),
    "AE": ("دبي", "أبو ظبي"), "SA": ("الرياض",), "CN": ("北京", "上海", "深圳"), "SG": ("Singapore",),
    "JP": ("東京", "大阪", "横浜"),
}

# Topics: tag name (after Totara's cleaning: no quotes, dashes, commas, dots or spaces) -> words per language.
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "leadership": {
        "en": ("leadership", "team", "coaching", "delegation", "vision", "motivation"),
        "fr": ("leadership", "équipe", "encadrement", "motivation"), "de": ("Führung", "Team", "Mitarbeiterführung"),
        "es": ("liderazgo", "equipo", "motivación"), "ru": ("лидерство", "команда", "мотивация"),
        "el": ("ηγεσία", "ομάδα", "παρακίνηση"), "ar": ("القيادة", "فريق", "التحفيز"),
        "zh_cn": ("领导力", "团队", "激励"), "ja": ("リーダーシップ", "チーム", "動機付け"),
    },
    "python": {
        "en": ("python", "programming", "scripts", "functions", "pandas", "automation"),
        "fr": ("programmation", "python", "fonctions"), "de": ("Programmierung", "Python", "Funktionen"),
        "es": ("programación", "python", "funciones"), "ru": ("программирование", "питон", "функции"),
        "el": ("προγραμματισμός", "συναρτήσεις"), "ar": ("البرمجة", "بايثون", "الدوال"),
        "zh_cn": ("编程", "函数", "自动化"), "ja": ("プログラミング", "関数", "自動化"),
    },
    "datascience": {
        "en": ("data", "statistics", "analysis", "visualisation", "regression", "dashboard"),
        "fr": ("données", "statistiques", "analyse"), "de": ("Daten", "Statistik", "Analyse"),
        "es": ("datos", "estadística", "análisis"), "ru": ("данные", "статистика", "анализ"),
        "el": ("δεδομένα", "στατιστική", "ανάλυση"), "ar": ("البيانات", "الإحصاء", "التحليل"),
        "zh_cn": ("数据", "统计", "分析"), "ja": ("データ", "統計", "分析"),
    },
    "safety": {
        "en": ("safety", "hazard", "risk", "incident", "protective", "equipment"),
        "fr": ("sécurité", "risque", "prévention"), "de": ("Sicherheit", "Gefahr", "Arbeitsschutz"),
        "es": ("seguridad", "riesgo", "prevención"), "ru": ("безопасность", "риск", "охрана"),
        "el": ("ασφάλεια", "κίνδυνος", "πρόληψη"), "ar": ("السلامة", "المخاطر", "الوقاية"),
        "zh_cn": ("安全", "风险", "预防"), "ja": ("安全", "危険", "予防"),
    },
    "compliance": {
        "en": ("compliance", "regulation", "audit", "policy", "privacy", "gdpr"),
        "fr": ("conformité", "réglementation", "audit"), "de": ("Compliance", "Datenschutz", "Richtlinie"),
        "es": ("cumplimiento", "normativa", "auditoría"), "ru": ("соответствие", "регулирование", "аудит"),
        "el": ("συμμόρφωση", "κανονισμός", "έλεγχος"), "ar": ("الامتثال", "اللوائح", "التدقيق"),
        "zh_cn": ("合规", "法规", "审计"), "ja": ("コンプライアンス", "規制", "監査"),
    },
    "sales": {
        "en": ("sales", "customer", "negotiation", "pipeline", "prospecting", "closing"),
        "fr": ("vente", "client", "négociation"), "de": ("Vertrieb", "Kunde", "Verhandlung"),
        "es": ("ventas", "cliente", "negociación"), "ru": ("продажи", "клиент", "переговоры"),
        "el": ("πωλήσεις", "πελάτης", "διαπραγμάτευση"), "ar": ("المبيعات", "العملاء", "التفاوض"),
        "zh_cn": ("销售", "客户", "谈判"), "ja": ("営業", "顧客", "交渉"),
    },
    "wellbeing": {
        "en": ("wellbeing", "stress", "mindfulness", "resilience", "sleep", "balance"),
        "fr": ("bien-être", "stress", "résilience"), "de": ("Wohlbefinden", "Stress", "Achtsamkeit"),
        "es": ("bienestar", "estrés", "resiliencia"), "ru": ("благополучие", "стресс", "устойчивость"),
        "el": ("ευεξία", "άγχος", "ανθεκτικότητα"), "ar": ("الرفاهية", "الإجهاد", "المرونة"),
        "zh_cn": ("健康", "压力", "正念"), "ja": ("ウェルビーイング", "ストレス", "マインドフルネス"),
    },
    "finance": {
        "en": ("finance", "budget", "accounting", "forecast", "invoice", "cashflow"),
        "fr": ("finance", "budget", "comptabilité"), "de": ("Finanzen", "Budget", "Buchhaltung"),
        "es": ("finanzas", "presupuesto", "contabilidad"), "ru": ("финансы", "бюджет", "бухгалтерия"),
        "el": ("οικονομικά", "προϋπολογισμός", "λογιστική"), "ar": ("المالية", "الميزانية", "المحاسبة"),
        "zh_cn": ("财务", "预算", "会计"), "ja": ("財務", "予算", "会計"),
    },
    "communication": {
        "en": ("communication", "presentation", "writing", "listening", "meetings", "storytelling"),
        "fr": ("communication", "présentation", "écoute"), "de": ("Kommunikation", "Präsentation", "Zuhören"),
        "es": ("comunicación", "presentación", "escucha"), "ru": ("коммуникация", "презентация", "слушание"),
        "el": ("επικοινωνία", "παρουσίαση", "ακρόαση"), "ar": ("التواصل", "العرض", "الاستماع"),
        "zh_cn": ("沟通", "演讲", "倾听"), "ja": ("コミュニケーション", "プレゼンテーション", "傾聴"),
    },
    "cybersecurity": {
        "en": ("cybersecurity", "phishing", "passwords", "encryption", "malware", "firewall"),
        "fr": ("cybersécurité", "hameçonnage", "chiffrement"), "de": ("Cybersicherheit", "Phishing", "Verschlüsselung"),
        "es": ("ciberseguridad", "suplantación", "cifrado"), "ru": ("кибербезопасность", "фишинг", "шифрование"),
        "el": ("κυβερνοασφάλεια", "κρυπτογράφηση", "κωδικοί"), "ar": ("الأمن السيبراني", "التصيد", "التشفير"),
        "zh_cn": ("网络安全", "钓鱼", "加密"), "ja": ("サイバーセキュリティ", "フィッシング", "暗号化"),
    },
    "projectmanagement": {
        "en": ("project", "planning", "scope", "milestones", "agile", "scrum"),
        "fr": ("projet", "planification", "jalons"), "de": ("Projekt", "Planung", "Meilensteine"),
        "es": ("proyecto", "planificación", "hitos"), "ru": ("проект", "планирование", "этапы"),
        "el": ("έργο", "σχεδιασμός", "ορόσημα"), "ar": ("المشروع", "التخطيط", "المراحل"),
        "zh_cn": ("项目", "计划", "里程碑"), "ja": ("プロジェクト", "計画", "マイルストーン"),
    },
    "customerservice": {
        "en": ("service", "complaints", "empathy", "support", "satisfaction", "helpdesk"),
        "fr": ("service", "réclamations", "empathie"), "de": ("Kundenservice", "Beschwerden", "Empathie"),
        "es": ("atención", "quejas", "empatía"), "ru": ("обслуживание", "жалобы", "эмпатия"),
        "el": ("εξυπηρέτηση", "παράπονα", "ενσυναίσθηση"), "ar": ("خدمة العملاء", "الشكاوى", "التعاطف"),
        "zh_cn": ("客服", "投诉", "同理心"), "ja": ("接客", "苦情", "共感"),
    },
}
TOPIC_NAMES = tuple(TOPICS)
# Course tags (`tag_<name>`), one per topic, as an administrator might name them.
COURSE_TAGS = (
    "management", "coding", "analytics", "healthandsafety", "legal", "selling", "health", "accounting",
    "softskills", "security", "delivery", "support",
)
# Filler words per language: common words (many are stop words) that make documents read like sentences.
FILLER: dict[str, tuple[str, ...]] = {
    "en": ("the", "and", "for", "with", "your", "how", "to", "of", "in", "practical", "guide", "introduction"),
    "fr": ("le", "la", "et", "pour", "avec", "des", "votre", "guide", "pratique", "introduction"),
    "de": ("der", "die", "und", "für", "mit", "Ihre", "praktischer", "Leitfaden", "Einführung"),
    "es": ("el", "la", "y", "para", "con", "su", "guía", "práctica", "introducción"),
    "ru": ("и", "в", "для", "с", "ваш", "практическое", "руководство", "введение"),
    "el": ("και", "για", "με", "το", "η", "πρακτικός", "οδηγός", "εισαγωγή"),
    "ar": ("و", "في", "من", "إلى", "مع", "دليل", "عملي", "مقدمة"),
    "zh_cn": ("的", "和", "在", "实用", "指南", "入门"),
    "ja": ("の", "と", "を", "実践", "ガイド", "入門"),
}
CJK_LANGS = ("zh_cn", "ja")
DESCRIPTION_LEADS: dict[str, str] = {
    "en": "Interested in", "fr": "Intéressé par", "de": "Interessiert an", "es": "Interesado en",
    "ru": "Интересуюсь темами", "el": "Ενδιαφέρομαι για", "ar": "مهتم بـ", "zh_cn": "感兴趣的领域", "ja": "興味があるのは",
}


@dataclass(frozen=True)
class GenerationSummary:
    """What generate_export wrote: where, from which seed, and how many rows per tenant."""

    out: Path
    seed: int
    tenants: list[str]
    users: dict[str, int] = field(default_factory=dict)  # tenant -> user_data rows
    items: dict[str, int] = field(default_factory=dict)  # tenant -> item_data rows
    interactions: dict[str, int] = field(default_factory=dict)  # tenant -> user_interactions rows
    positive_share: float = 0.0  # share of tenant 0 interactions with rating 1


# --- PHP fputcsv-compatible writing --------------------------------------------------------------------------

def _write_text(path: Path, lines: Iterable[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.writelines(lines)


# --- the world: users, items and their hidden preferences -----------------------------------------------------


@dataclass
class _World:
    user_ids: np.ndarray  # int64, ascending
    user_lang: np.ndarray  # index into LANGUAGES
    user_rows: list[list[str]]  # user_data fields without the id, in USER_HEADER order
    user_tenant: np.ndarray  # 0 = no tenant, else tenant number
    preference: np.ndarray  # (n_users, n_topics) float32, rows sum to 1
    item_ids: list[str]
    item_type: np.ndarray  # index into ITEM_TYPES
    item_topic: np.ndarray  # main topic
    item_tags: np.ndarray  # (n_items, n_tag_columns) uint8
    tag_columns: list[str]
    item_documents: list[str]
    item_tenant: np.ndarray  # 0 = tenant-less (visible to every tenant), else owner tenant
    popularity: np.ndarray  # float64, Zipf-like


def _choice_words(rng: np.random.Generator, words: Sequence[str], n: int) -> list[str]:
    return [words[i] for i in rng.integers(0, len(words), n)]


def _join(lang: str, words: Sequence[str]) -> str:
    return ("" if lang in CJK_LANGS else " ").join(words)


def _make_users(rng: np.random.Generator, n_users: int, n_tenants: int) -> tuple[np.ndarray, ...]:
    n_topics = len(TOPIC_NAMES)
    user_ids = 2 + np.cumsum(rng.integers(1, 3, n_users))  # ids 1 (guest) and 2 (admin) are never exported
    shares = np.array([lang[2] for lang in LANGUAGES])
    user_lang = rng.choice(len(LANGUAGES), n_users, p=shares / shares.sum())
    # Hidden preference: the position's topic, the organisation's topic and a personal interest topic.
    n_positions = max(n_topics * 3, 12)
    n_orgs = max(n_topics * 2, 8)
    position_topic = rng.permutation(np.arange(n_positions) % n_topics)
    org_topic = rng.permutation(np.arange(n_orgs) % n_topics)
    position = rng.integers(0, n_positions, n_users)
    org = rng.integers(0, n_orgs, n_users)
    personal = rng.integers(0, n_topics, n_users)
    preference = np.full((n_users, n_topics), 0.04 / n_topics, np.float64)
    rows = np.arange(n_users)
    np.add.at(preference, (rows, position_topic[position]), 0.5)
    np.add.at(preference, (rows, org_topic[org]), 0.2)
    np.add.at(preference, (rows, personal), 0.26)
    preference /= preference.sum(axis=1, keepdims=True)
    if n_tenants:
        user_tenant = np.where(rng.random(n_users) < 0.15, 0, rng.integers(1, n_tenants + 1, n_users))
    else:
        user_tenant = np.zeros(n_users, np.int64)
    return user_ids, user_lang, preference.astype(np.float32), user_tenant, position, org, personal, position_topic


def _user_rows(
    rng: np.random.Generator, user_lang: np.ndarray, preference: np.ndarray, position: np.ndarray, org: np.ndarray,
    personal: np.ndarray, position_topic: np.ndarray,
) -> list[list[str]]:
    n_users, n_topics = preference.shape
    n_positions = len(position_topic)
    # Interest tag instance ids: per topic a block of ids; users pick from their personal and position topics.
    interest_base = 1000 + 17 * np.arange(n_topics)
    country_pick = rng.random(n_users)
    city_pick = rng.random(n_users)
    n_interests = rng.choice(4, n_users, p=[0.3, 0.3, 0.25, 0.15])
    interest_offsets = rng.integers(0, 17, (n_users, 3))
    interest_from_position = rng.random((n_users, 3)) < 0.35
    has_asp = rng.random(n_users) < 0.3
    asp = rng.integers(0, n_positions, n_users)
    second_position = rng.random(n_users) < 0.1
    second = rng.integers(0, n_positions, n_users)
    n_competencies = rng.choice(4, n_users, p=[0.4, 0.3, 0.2, 0.1])
    competency_offsets = rng.integers(0, 5, (n_users, 3))
    proficiency = rng.integers(0, 6, (n_users, 3))
    n_badges = rng.choice(3, n_users, p=[0.5, 0.35, 0.15])
    badge_offsets = rng.integers(0, 3, (n_users, 2))
    has_description = rng.random(n_users) < 0.6
    top_topics = np.argsort(-preference, axis=1)[:, :2]
    word_picks = rng.integers(0, 1 << 30, (n_users, 2))
    rows: list[list[str]] = []
    for u in range(n_users):
        lang, countries, _, _ = LANGUAGES[user_lang[u]]
        country = "" if country_pick[u] < 0.05 else countries[int(country_pick[u] * len(countries)) % len(countries)]
        cities = CITIES.get(country, ("",))
        city = "" if city_pick[u] < 0.1 else cities[int(city_pick[u] * 1000) % len(cities)]
        pos_topic = int(position_topic[position[u]])
        interests = sorted({
            str(interest_base[pos_topic if interest_from_position[u, k] else personal[u]] + interest_offsets[u, k])
            for k in range(n_interests[u])
        })
        positions = [str(100 + position[u])]
        if second_position[u]:
            positions.append(str(100 + second[u]))
        competencies: dict[str, int] = {}
        for k in range(n_competencies[u]):
            competencies.setdefault(str(500 + 5 * pos_topic + competency_offsets[u, k]), int(proficiency[u, k]))
        # An empty proficiency means 0 (spec §5.5): Totara writes `id:` for it.
        competency_text = "|".join(f"{cid}:{level or ''}" for cid, level in competencies.items())
        badges = [f"{20 + 3 * int(top_topics[u, k % 2]) + badge_offsets[u, k]}" for k in range(n_badges[u])]
        description = ""
        if has_description[u]:
            topic_words = [
                TOPICS[TOPIC_NAMES[top_topics[u, k]]][lang][word_picks[u, k] % len(TOPICS[TOPIC_NAMES[top_topics[u, k]]][lang])]
                for k in range(2)
            ]
            joiner = "、" if lang in CJK_LANGS else " & "
            description = f"{DESCRIPTION_LEADS[lang]} {joiner.join(topic_words)}"
        rows.append([
            lang, city, country, "|".join(interests), str(100 + asp[u]) if has_asp[u] else "", "|".join(positions),
            str(300 + org[u]), competency_text, "|".join(sorted(set(badges))), description,
        ])
    return rows


def _totara_document(text: str) -> str:
    """Totara's document cleaning (spec §5.4): `"` -> `'`, commas and literal \\n \\r \\t -> spaces, trimmed."""
    text = text.replace('"', "'").replace(",", " ")
    for literal in ("\\n", "\\r", "\\t"):
        text = text.replace(literal, " ")
    return text.strip()


def _make_items(rng: np.random.Generator, n_items: int, n_tenants: int) -> tuple:
    n_topics = len(TOPIC_NAMES)
    item_type = np.sort(rng.choice(len(ITEM_TYPES), n_items, p=TYPE_SHARES))
    topic_weight = 1.0 / np.arange(1, n_topics + 1) ** 0.5
    item_topic = rng.choice(n_topics, n_items, p=topic_weight / topic_weight.sum())
    # Numeric ids: increasing with gaps; articles and microlearning share Totara's article table, so one counter.
    ids: list[str] = []
    next_id = {COURSE: 2, WORKSPACE: 40, ARTICLE: 1, MICROLEARNING: 1, PLAYLIST: 1}
    counter_key = {COURSE: COURSE, WORKSPACE: WORKSPACE, ARTICLE: ARTICLE, MICROLEARNING: ARTICLE, PLAYLIST: PLAYLIST}
    gaps = rng.integers(1, 4, n_items)
    for i, t in enumerate(item_type):
        key = counter_key[int(t)]
        next_id[key] += int(gaps[i])
        ids.append(f"{ITEM_TYPES[t]}{next_id[key]}")
    # Tags: engage items and workspaces carry topics (topic_), courses carry course tags (tag_).
    tag_columns = [f"topic_{name}" for name in TOPIC_NAMES] + [f"tag_{name}" for name in COURSE_TAGS]
    tags = np.zeros((n_items, 2 * n_topics), np.uint8)
    is_course = item_type == COURSE
    rows = np.arange(n_items)
    tags[rows, np.where(is_course, n_topics + item_topic, item_topic)] = 1
    extra = rng.random(n_items) < 0.3
    extra_topic = rng.integers(0, n_topics, n_items)
    tags[rows[extra], np.where(is_course, n_topics + extra_topic, extra_topic)[extra]] = 1
    untagged = rng.random(n_items) < 0.05
    tags[untagged] = 0
    item_lang_shares = np.array([lang[3] for lang in LANGUAGES])
    item_lang = rng.choice(len(LANGUAGES), n_items, p=item_lang_shares / item_lang_shares.sum())
    n_words = rng.integers(4, 28, n_items)
    multiline = rng.random(n_items) < 0.2
    documents = []
    for i in range(n_items):
        lang = LANG_CODES[item_lang[i]]
        topic_words = TOPICS[TOPIC_NAMES[item_topic[i]]][lang]
        title = _join(lang, _choice_words(rng, topic_words, 2))
        n_topic = int(n_words[i] * 0.6)
        body_words = _choice_words(rng, topic_words, n_topic) + _choice_words(rng, FILLER[lang], n_words[i] - n_topic)
        if lang != "en" and rng.random() < 0.3:  # some English loanwords in other languages
            body_words += _choice_words(rng, TOPICS[TOPIC_NAMES[item_topic[i]]]["en"], 2)
        body_words = [body_words[k] for k in rng.permutation(len(body_words))]
        body = _join(lang, body_words)
        if multiline[i] and len(body_words) > 6:
            half = len(body_words) // 2
            body = _join(lang, body_words[:half]) + "\n" + _join(lang, body_words[half:])
        if rng.random() < 0.05:
            body += ", see https://example.com/learn/" + str(i)
        documents.append(_totara_document(f"{title} {body}"))
    item_tenant = (
        np.where(rng.random(n_items) < 0.35, 0, rng.integers(1, n_tenants + 1, n_items))
        if n_tenants else np.zeros(n_items, np.int64)
    )
    popularity = 1.0 / rng.permutation(np.arange(1, n_items + 1)) ** 0.9
    return ids, item_type, item_topic, tags, tag_columns, documents, item_tenant, popularity


def _build_world(seed: int, n_users: int, n_items: int, n_tenants: int) -> _World:
    rng = np.random.default_rng(seed)
    user_ids, user_lang, preference, user_tenant, position, org, personal, position_topic = _make_users(
        rng, n_users, n_tenants
    )
    user_rows = _user_rows(rng, user_lang, preference, position, org, personal, position_topic)
    ids, item_type, item_topic, tags, tag_columns, documents, item_tenant, popularity = _make_items(
        rng, n_items, n_tenants
    )
    return _World(
        user_ids, user_lang, user_rows, user_tenant, preference, ids, item_type, item_topic, tags, tag_columns,
        documents, item_tenant, popularity,
    )


# --- interactions ---------------------------------------------------------------------------------------------


def _topic_segments(world: _World) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items ordered by main topic with popularity cumulated in that order: (order, cumulative, low, high).

    Topic t's items are the segment [low[t], high[t]) of the cumulative popularity, so a uniform draw in it picks
    an item of topic t in proportion to its popularity.
    """
    n_topics = world.preference.shape[1]
    order = np.argsort(world.item_topic, kind="stable")
    cumulative = np.cumsum(world.popularity[order])
    topic_end = np.searchsorted(world.item_topic[order], np.arange(n_topics), side="right")
    topic_start = np.concatenate([[0], topic_end[:-1]])
    low = np.where(topic_start > 0, cumulative[np.maximum(topic_start - 1, 0)], 0.0)
    high = np.where(topic_end > 0, cumulative[np.maximum(topic_end - 1, 0)], 0.0)
    return order, cumulative, low, high


def _sample_interactions(
    rng: np.random.Generator, world: _World, n_interactions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, rating, timestamp) arrays, unique per (user, item), sorted by user then time."""
    n_users, n_topics = world.preference.shape
    n_items = len(world.item_ids)
    activity = rng.lognormal(0.0, 1.0, n_users)
    activity_cdf = np.cumsum(activity / activity.sum())
    order, cumulative, low, high = _topic_segments(world)
    preference_cdf = np.cumsum(world.preference, axis=1)
    keys = np.zeros(0, np.int64)
    for attempt in range(10_000):
        missing = n_interactions - keys.shape[0]
        if missing <= 0:
            break
        draws = min(int(missing * 1.3) + 16, 1 << 20)  # in blocks, to bound memory at 5M interactions
        user = np.minimum(np.searchsorted(activity_cdf, rng.random(draws) * activity_cdf[-1]), n_users - 1)
        topic = (rng.random(draws)[:, None] > preference_cdf[user]).sum(axis=1).clip(0, n_topics - 1)
        by_topic = rng.random(draws) < 0.8
        target = np.where(by_topic, low[topic] + rng.random(draws) * (high[topic] - low[topic]),
                          rng.random(draws) * cumulative[-1])
        item = order[np.minimum(np.searchsorted(cumulative, target, side="right"), n_items - 1)]
        if attempt >= 30:  # dense requests saturate the popular pairs: fill the rest uniformly
            item = rng.integers(0, n_items, draws)
        item = _make_visible(rng, world, user, item, cumulative, order)
        keys = np.unique(np.concatenate([keys, user.astype(np.int64) * n_items + item]))
    if keys.shape[0] > n_interactions:
        keys = np.sort(rng.choice(keys, n_interactions, replace=False))
    user = (keys // n_items).astype(np.int64)
    item = (keys % n_items).astype(np.int64)
    match = world.preference[user, world.item_topic[item]] / world.preference[user].max(axis=1)
    rating = (rng.random(user.shape[0]) < 0.1 + 0.7 * match).astype(np.int8)
    rating[world.item_type[item] == COURSE] = 1  # a self-enrolment sums 2 (spec §5.3)
    window = np.where(world.item_type[item] == COURSE, 104 * WEEK, INTERACTIONS_PERIOD_WEEKS * WEEK)
    timestamp = EXPORT_TIME - (rng.random(user.shape[0]) * window).astype(np.int64)
    order_rows = np.lexsort((timestamp, user))
    return user[order_rows], item[order_rows], rating[order_rows], timestamp[order_rows]


def _make_visible(
    rng: np.random.Generator, world: _World, user: np.ndarray, item: np.ndarray, cumulative: np.ndarray,
    order: np.ndarray,
) -> np.ndarray:
    """Redraw items a tenant member may not see (another tenant's) until every pair is visible."""
    tenant = world.user_tenant[user]
    for _ in range(50):
        hidden = (tenant > 0) & (world.item_tenant[item] > 0) & (world.item_tenant[item] != tenant)
        if not hidden.any():
            return item
        redraw = np.searchsorted(cumulative, rng.random(int(hidden.sum())) * cumulative[-1], side="right")
        item[hidden] = order[np.minimum(redraw, len(order) - 1)]
    hidden = (tenant > 0) & (world.item_tenant[item] > 0) & (world.item_tenant[item] != tenant)
    shared = np.flatnonzero(world.item_tenant == 0)
    if hidden.any() and shared.size:
        item[hidden] = shared[rng.integers(0, shared.size, int(hidden.sum()))]
    return item


# --- writing --------------------------------------------------------------------------------------------------


def _write_tenant(
    out: Path, tenant: str, world: _World, user_mask: np.ndarray, item_mask: np.ndarray,
    interactions: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[int, int, int]:
    user_index = np.flatnonzero(user_mask)
    user_lines = [php_csv_line(USER_HEADER)]
    user_lines += [
        php_csv_line([str(world.user_ids[u]), *world.user_rows[u]]) for u in user_index
    ]
    _write_text(out / f"user_data_{tenant}.csv", user_lines)

    item_index = np.flatnonzero(item_mask)
    header = ["item_id", *ITEM_TYPES, *world.tag_columns, "document"]
    one_hot = np.zeros((len(world.item_ids), len(ITEM_TYPES)), np.uint8)
    one_hot[np.arange(len(world.item_ids)), world.item_type] = 1
    flags = np.hstack([one_hot, world.item_tags])[item_index]
    flag_text = [",".join(row) for row in flags.astype(str).tolist()]
    item_lines = [php_csv_line(header)]
    item_lines += [
        f"{php_csv_field(world.item_ids[i])},{flag_text[k]},{php_csv_field(world.item_documents[i])}\n"
        for k, i in enumerate(item_index)
    ]
    _write_text(out / f"item_data_{tenant}.csv", item_lines)

    user, item, rating, timestamp = interactions
    keep = user_mask[user] & item_mask[item]
    user_text = world.user_ids.astype(str)[user[keep]].tolist()
    item_ids = np.asarray(world.item_ids, dtype=object)
    item_text = item_ids[item[keep]].tolist()
    rating_text = rating[keep].astype(str).tolist()
    time_text = timestamp[keep].astype(str).tolist()
    body = "\n".join(map(",".join, zip(user_text, item_text, rating_text, time_text)))
    _write_text(out / f"user_interactions_{tenant}.csv", [",".join(INTERACTION_HEADER) + "\n", body, "\n" if body else ""])
    return int(user_index.size), int(item_index.size), int(keep.sum())


def generate_export(out: Path, *, seed: int, users: int, items: int, interactions: int, tenants: int) -> GenerationSummary:
    """Write a complete Totara export folder to `out`: tenants.csv, every tenant's three files, export_completed.

    `tenants` is the number of tenants besides tenant 0 (which always exists and holds everything); they get ids
    1..tenants. Each user belongs to one tenant or to none (15%); each item is tenant-less (35%, visible to all
    tenants) or owned by one tenant. Same arguments -> byte-identical files.
    """
    if users < 1 or items < 1 or interactions < 0 or tenants < 0:
        raise ValueError("users and items must be >= 1; interactions and tenants >= 0")
    if interactions > users * items // 2:
        raise ValueError(
            f"{interactions} interactions cannot be unique (user, item) pairs among {users} users and {items} items: "
            f"use at most half of users x items ({users * items // 2})"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / COMPLETED_FLAG).unlink(missing_ok=True)  # the flag goes last: readers never see a half-written export
    world = _build_world(seed, users, items, tenants)
    sampled = _sample_interactions(np.random.default_rng([seed, 1]), world, interactions)
    tenant_ids = ["0"] + [str(t) for t in range(1, tenants + 1)]
    summary = GenerationSummary(out=out, seed=seed, tenants=tenant_ids)
    for t, tenant in enumerate(tenant_ids):
        if t == 0:
            user_mask = np.ones(users, bool)
            item_mask = np.ones(items, bool)
        else:
            user_mask = world.user_tenant == t
            item_mask = (world.item_tenant == 0) | (world.item_tenant == t)
        counts = _write_tenant(out, tenant, world, user_mask, item_mask, sampled)
        summary.users[tenant], summary.items[tenant], summary.interactions[tenant] = counts
    _write_text(out / "tenants.csv", ["tenants\n"] + [f"{t}\n" for t in tenant_ids])
    _write_text(out / COMPLETED_FLAG, [])
    positives = float(sampled[2].mean()) if sampled[2].size else 0.0
    return GenerationSummary(
        out, seed, tenant_ids, summary.users, summary.items, summary.interactions, round(positives, 4)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """`generate-sample --out DIR --seed S --users N --items M --interactions K --tenants T`."""
    parser = argparse.ArgumentParser(
        prog="ml-service generate-sample",
        description="Write a synthetic, learnable Totara export folder (tenants.csv, per-tenant CSVs, export_completed).",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--interactions", type=int, default=6000)
    parser.add_argument("--tenants", type=int, default=2, help="tenants besides tenant 0 (ids 1..T)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    started = time.perf_counter()
    try:
        summary = generate_export(
            args.out, seed=args.seed, users=args.users, items=args.items, interactions=args.interactions,
            tenants=args.tenants,
        )
    except ValueError as error:
        print(f"generate-sample: {error}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    for tenant in summary.tenants:
        print(
            f"tenant {tenant}: {summary.users[tenant]} users, {summary.items[tenant]} items, "
            f"{summary.interactions[tenant]} interactions"
        )
    print(f"wrote {summary.out} in {elapsed:.1f} s (seed {summary.seed}, {summary.positive_share:.0%} rating 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
