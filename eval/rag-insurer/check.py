#!/usr/bin/env python3
"""Consistency checks for the rag-insurer evaluation set. Standard library only.

    python3 eval/rag-insurer/check.py

Exits 0 and prints a summary when every check passes; otherwise prints each
problem and exits 1.
"""

import collections
import html
import importlib.util
import json
import os
import re
import sys
import unicodedata
import zipfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
KB = os.path.join(HERE, "kb")
QUESTIONS = os.path.join(HERE, "questions.jsonl")

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
FIELDS = ["id", "lang", "question", "answer", "accept", "sources", "answerable", "type"]
OPTIONAL = ["parts"]
TYPES = ["fact", "number", "table", "multi_part", "unanswerable", "cross_language"]
FORMATS = (".md", ".html", ".docx")

# Common Simplified-only characters. None of them is a Traditional form: each one is
# checked below to be absent from cp950 (Big5, the Taiwan Traditional character set),
# and variants that are also used in Traditional text (么 个 从 点 医 种 机 内 叶 号 广
# 后 里 干 只 ...) were left out on purpose.
SIMPLIFIED = (
    "这为们说时会对发过还学没样经见让应关开问进动长门现实间两东车华话条给总计语认"
    "组产员费务护险证书记报负责济额业专传众单卖卫历压厅县变吗启团园围图处备头宝审"
    "导岁币带帮库废张弹归彻态恶惯战执扩择损换热爱状独环电画码础称积稳笔签简类纪线"
    "练细织终绍络绝统继续维综绿罗职联脑节药获虑补装规视览觉订议讯讲许论设访评识诉"
    "词译试询该详误请读课谁调谈贡财败货质购贴贵贷贸资赔转轮软轻载辆输边达迁运远违"
    "连选递遗邮邻钟钱铁银链销锁闻队阳阶际陆陈随难须顺顾预领频题风饭馆验"
    "偿诊疗级项缴约档账"
)

problems = []


def fail(msg):
    problems.append(msg)


# ---------------------------------------------------------------- text extraction

def norm(s):
    """NFKC, lower-case, drop commas between digits, drop whitespace and * and `."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = re.sub(r"(?<=\d),(?=\d)", "", s)
    return re.sub(r"[\s*`]", "", s)


def strip_html(raw):
    raw = re.sub(r"(?is)<(script|style|nav)\b.*?</\1\s*>", " ", raw)
    return html.unescape(re.sub(r"(?s)<[^>]+>", " ", raw))


def docx_xml(path):
    with zipfile.ZipFile(path) as z:
        return z.read("word/document.xml").decode("utf-8")


def docx_text(elem):
    """Text of the w:t elements under elem, one line per paragraph."""
    return "\n".join("".join(t.text or "" for t in p.iter(W + "t")) for p in elem.iter(W + "p"))


def doc_text(name):
    path = os.path.join(KB, name)
    if name.endswith(".docx"):
        return docx_text(ET.fromstring(docx_xml(path)))
    raw = open(path, encoding="utf-8").read()
    return strip_html(raw) if name.endswith(".html") else raw


def raw_text(name):
    path = os.path.join(KB, name)
    if name.endswith(".docx"):
        with zipfile.ZipFile(path) as z:
            return "\n".join(z.read(n).decode("utf-8") for n in z.namelist())
    return open(path, encoding="utf-8").read()


def table_rows(name):
    """Normalised text of each table row (header rows included)."""
    path = os.path.join(KB, name)
    if name.endswith(".md"):
        rows = [l for l in open(path, encoding="utf-8") if l.lstrip().startswith("|")]
        return [norm(r) for r in rows if not re.fullmatch(r"[\s|:\-]+", r)]
    if name.endswith(".html"):
        raw = re.sub(r"(?is)<(script|style|nav)\b.*?</\1\s*>", " ", open(path, encoding="utf-8").read())
        return [norm(strip_html(r)) for r in re.findall(r"(?is)<tr\b.*?</tr>", raw)]
    root = ET.fromstring(docx_xml(path))
    return [norm(docx_text(tr)) for tr in root.iter(W + "tr")]


def occurrences(needle, text):
    """(clean, embedded): how often needle occurs in text on its own, and how often
    inside a longer number (a digit or decimal point right before a leading digit,
    or a digit or ".digit" right after a trailing digit)."""
    clean = embedded = 0
    for m in re.finditer(re.escape(needle), text):
        before = text[m.start() - 1] if m.start() else ""
        after = text[m.end():m.end() + 2]
        inside = (needle[0].isdigit() and (before.isdigit() or before == ".")) or (
            needle[-1].isdigit() and (after[:1].isdigit()
                                      or (after[:1] == "." and after[1:2].isdigit())))
        if inside:
            embedded += 1
        else:
            clean += 1
    return clean, embedded


def is_zh(name):
    return name.startswith("zh-")


HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


# ---------------------------------------------------------------- documents

docs = sorted(n for n in os.listdir(KB) if not n.startswith("."))
texts = {}
for n in docs:
    if not n.endswith(FORMATS):
        fail(f"kb/{n}: unexpected file type (want .md, .html or .docx)")
        continue
    try:
        texts[n] = doc_text(n)
    except Exception as e:  # noqa: BLE001 - report any unreadable document
        fail(f"kb/{n}: cannot read: {e}")
ntext = {n: norm(t) for n, t in texts.items()}
rows = {n: table_rows(n) for n in texts}

en_docs = [n for n in texts if not is_zh(n)]
zh_docs = [n for n in texts if is_zh(n)]
if len(texts) != 14 or len(en_docs) != 7 or len(zh_docs) != 7:
    fail(f"want 14 documents, 7 English and 7 Chinese; have {len(en_docs)} + {len(zh_docs)}")
by_ext = collections.Counter(os.path.splitext(n)[1] for n in texts)
if by_ext[".html"] != 2 or by_ext[".docx"] != 1:
    fail(f"want 2 HTML files and 1 DOCX file; have {dict(by_ext)}")

with_tables = [n for n in texts if len(rows[n]) >= 3]
if len(with_tables) < 6:
    fail(f"only {len(with_tables)} documents have a table of 3+ rows; want at least 6")

for n in texts:
    t = texts[n]
    if is_zh(n):
        han = len(HAN.findall(t))
        if not 500 <= han <= 800:
            fail(f"kb/{n}: {han} Han characters, want 500-800")
    else:
        words = len(re.findall(r"[A-Za-z0-9][A-Za-z0-9'’.,$%:/&+-]*", t))
        if not 250 <= words <= 600:
            fail(f"kb/{n}: {words} words, want 250-600")
    if n.endswith(".md") and len(re.findall(r"(?m)^##? ", t)) < 3:
        fail(f"kb/{n}: fewer than 3 Markdown headings")

for n in (d for d in texts if d.endswith(".html")):
    raw = raw_text(n)
    for tag in ("<nav", "<script", "<thead", "<th>"):
        if tag not in raw:
            fail(f"kb/{n}: no {tag}>")
    if len(re.findall(r"(?i)<table\b", raw)) != 1:
        fail(f"kb/{n}: want exactly one <table>")

for n in (d for d in texts if d.endswith(".docx")):
    with zipfile.ZipFile(os.path.join(KB, n)) as z:
        names = set(z.namelist())
        for part in ("[Content_Types].xml", "_rels/.rels", "word/document.xml"):
            if part not in names:
                fail(f"kb/{n}: no {part}")
        for part in names:
            try:
                ET.fromstring(z.read(part))
            except ET.ParseError as e:
                fail(f"kb/{n}: {part} is not well-formed XML: {e}")
    d = docx_xml(os.path.join(KB, n))
    if '<w:pStyle w:val="Heading1"/>' not in d:
        fail(f"kb/{n}: no Heading1 paragraph")
    for tag in ("<w:tbl>", "<w:tr>", "<w:tc>", "<w:p>", "<w:r>", "<w:t"):
        if tag not in d:
            fail(f"kb/{n}: no {tag}")

# kb/ltc-rider.docx is what make_docx.py writes.
spec = importlib.util.spec_from_file_location("make_docx", os.path.join(HERE, "make_docx.py"))
make_docx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_docx)
docx_name = os.path.basename(make_docx.OUT)
if docx_name in texts and docx_xml(make_docx.OUT) != make_docx.document_xml():
    fail(f"kb/{docx_name} is out of date: run python3 eval/rag-insurer/make_docx.py")

# ---------------------------------------------------------------- questions

qs = []
with open(QUESTIONS, encoding="utf-8") as f:
    for i, line in enumerate(f, 1):
        if not line.strip():
            fail(f"questions.jsonl:{i}: empty line")
            continue
        try:
            q = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"questions.jsonl:{i}: not JSON: {e}")
            continue
        if not isinstance(q, dict):
            fail(f"questions.jsonl:{i}: not an object")
            continue
        q["_line"] = i
        qs.append(q)

seen = set()
cited = collections.Counter()
for q in qs:
    where = f"questions.jsonl:{q['_line']} ({q.get('id')})"
    missing = [k for k in FIELDS if k not in q]
    extra = [k for k in q if k not in FIELDS + OPTIONAL + ["_line"]]
    if missing or extra:
        fail(f"{where}: missing fields {missing}, unknown fields {extra}")
        continue
    qid, lang, typ = q["id"], q["lang"], q["type"]
    if not isinstance(qid, str) or not re.fullmatch(r"r\d{3}", qid):
        fail(f"{where}: id should look like r001")
    if qid in seen:
        fail(f"{where}: duplicate id")
    seen.add(qid)
    if lang not in ("en", "zh"):
        fail(f"{where}: lang {lang!r}")
    if typ not in TYPES:
        fail(f"{where}: type {typ!r}")
    if not isinstance(q["question"], str) or not q["question"].strip():
        fail(f"{where}: empty question")
    if not isinstance(q["answer"], str):
        fail(f"{where}: answer is not a string")
    if not isinstance(q["answerable"], bool):
        fail(f"{where}: answerable is not a bool")
    if not (isinstance(q["accept"], list) and all(isinstance(a, str) and a.strip() for a in q["accept"])):
        fail(f"{where}: accept must be a list of non-empty strings")
        continue
    if not (isinstance(q["sources"], list) and all(isinstance(s, str) for s in q["sources"])):
        fail(f"{where}: sources must be a list of strings")
        continue
    if len(set(q["sources"])) != len(q["sources"]):
        fail(f"{where}: duplicate source")
    if "parts" in q and typ != "multi_part":
        fail(f"{where}: parts is only for multi_part questions")
    zh_q = HAN.search(q["question"]) is not None
    if (lang == "zh") != zh_q:
        fail(f"{where}: lang {lang} but the question {'has' if zh_q else 'has no'} Han characters")

    if (typ == "unanswerable") != (q["answerable"] is False):
        fail(f"{where}: type unanswerable exactly when answerable is false")
    if not q["answerable"]:
        if q["accept"] or q["sources"] or q["answer"] or "parts" in q:
            fail(f"{where}: an unanswerable question has empty answer, accept, sources and no parts")
        continue

    if not q["answer"].strip():
        fail(f"{where}: empty answer")
    if not q["sources"]:
        fail(f"{where}: no sources")
    bad = [s for s in q["sources"] if s not in texts]
    if bad:
        fail(f"{where}: unknown sources {bad}")
        continue
    cited.update(q["sources"])

    if typ == "multi_part":
        parts = q.get("parts")
        ok = (isinstance(parts, list) and len(parts) >= 2 and all(
            isinstance(p, list) and p and all(isinstance(a, str) and a.strip() for a in p)
            for p in parts))
        if not ok:
            fail(f"{where}: parts must be a list of 2+ non-empty lists of strings")
            continue
        if q["accept"]:
            fail(f"{where}: a multi_part question has accept []")
        groups = parts
    else:
        if not q["accept"]:
            fail(f"{where}: empty accept")
            continue
        groups = [q["accept"]]

    if typ == "cross_language":
        other = [s for s in q["sources"] if is_zh(s) == (lang == "zh")]
        if other:
            fail(f"{where}: cross_language but {other} is in the question's language")

    src = "\n".join(ntext[s] for s in q["sources"])
    src_rows = [r for s in q["sources"] for r in rows[s]]
    same_lang = "\n".join(ntext[n] for n in texts if is_zh(n) == (lang == "zh"))
    for group in groups:
        if len({norm(a) for a in group}) != len(group):
            fail(f"{where}: accept strings that are equal after normalisation: {group}")
        for a in group:
            na = norm(a)
            if na not in src:
                fail(f"{where}: {a!r} does not occur in {q['sources']}")
                continue
            # The string must not sit inside a longer number ("8 days" in "28 days").
            clean, embedded = occurrences(na, src)
            if embedded:
                fail(f"{where}: {a!r} also matches part of a longer number in the sources")
            if typ == "table":
                n_rows = sum(na in r for r in src_rows)
                if n_rows != 1:
                    fail(f"{where}: {a!r} occurs in {n_rows} table rows of the sources, want exactly 1")
            if typ == "cross_language" and occurrences(na, same_lang)[0]:
                fail(f"{where}: {a!r} also occurs in a document in the question's language")

for n in texts:
    if not cited[n]:
        fail(f"kb/{n}: not cited by any question")

# ---------------------------------------------------------------- Simplified characters

for c in SIMPLIFIED:
    try:
        c.encode("cp950")
        fail(f"SIMPLIFIED list: {c} is in cp950 (Big5), so it is also a Traditional form")
    except UnicodeEncodeError:
        pass
if len(set(SIMPLIFIED)) != len(SIMPLIFIED):
    fail("SIMPLIFIED list has duplicates")

checked = {f"kb/{n}": raw_text(n) for n in docs if n.endswith(FORMATS)}
for q in qs:
    checked[f"questions.jsonl {q.get('id')}"] = json.dumps(q, ensure_ascii=False)
checked["README.md"] = open(os.path.join(HERE, "README.md"), encoding="utf-8").read() \
    if os.path.exists(os.path.join(HERE, "README.md")) else ""
for where, t in checked.items():
    found = sorted({c for c in t if c in SIMPLIFIED})
    if found:
        fail(f"{where}: Simplified characters {''.join(found)}")
    # Extra: every Han character is in Big5 (cp950), the Taiwan Traditional set.
    non_big5 = []
    for c in set(HAN.findall(t)):
        try:
            c.encode("cp950")
        except UnicodeEncodeError:
            non_big5.append(c)
    if non_big5:
        fail(f"{where}: Han characters outside Big5 (cp950): {''.join(sorted(non_big5))}")

# ---------------------------------------------------------------- summary

if problems:
    for p in problems:
        print("FAIL", p)
    print(f"{len(problems)} problem(s)")
    sys.exit(1)

count = collections.Counter((q["type"], q["lang"]) for q in qs)
print(f"OK: {len(texts)} documents ({len(en_docs)} en, {len(zh_docs)} zh; "
      f"{by_ext['.md']} md, {by_ext['.html']} html, {by_ext['.docx']} docx; "
      f"{len(with_tables)} with tables), {len(qs)} questions")
print(f"{'':6}" + "".join(f"{t:>15}" for t in TYPES) + f"{'total':>8}")
for lang in ("en", "zh"):
    print(f"{lang:6}" + "".join(f"{count[(t, lang)]:>15}" for t in TYPES)
          + f"{sum(count[(t, lang)] for t in TYPES):>8}")
print(f"{'total':6}" + "".join(f"{sum(count[(t, l)] for l in ('en', 'zh')):>15}" for t in TYPES)
      + f"{len(qs):>8}")
print(f"answerable {sum(q['answerable'] for q in qs)}, unanswerable "
      f"{sum(not q['answerable'] for q in qs)}; every document cited "
      f"(min {min(cited.values())}, max {max(cited.values())} questions)")
