#!/usr/bin/env python3
"""Regenerate kb/ltc-rider.docx, the one DOCX document of the rag-insurer set.

Standard library only. Writes a minimal Office Open XML package:
[Content_Types].xml, _rels/.rels, word/document.xml (paragraphs, a Heading1
paragraph and one table), plus word/styles.xml and its relationship so that
Word shows the headings as headings. The zip entries have a fixed timestamp,
so running the script twice gives the same bytes.

    python3 eval/rag-insurer/make_docx.py
"""

import os
import zipfile
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "kb", "ltc-rider.docx")

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

TITLE = "CareStep Long-Term Care Rider (安步長照附約) — Policy Summary"

# (style, text); style None is a normal paragraph. The table goes after the
# paragraph whose text is TABLE_AFTER.
BODY = [
    (None, "Jade Mountain Life & Health Insurance Co., Ltd. · Rider code JM-LTC-R3 · "
           "Version 1.4 · Effective 1 July 2024. The rider wording prevails over this summary."),
    ("Heading2", "1. What the rider does"),
    (None, "The CareStep Long-Term Care Rider can be attached to Jade Mountain whole life "
           "policies and to the Jade Guardian Critical Illness Plan (critical-illness-plan.md). "
           "It pays a monthly benefit for as long as the insured is in a covered state of "
           "long-term care, plus a one-off initial care benefit."),
    (None, "The policyholder chooses a monthly sum insured of NT$20,000, NT$30,000 or "
           "NT$50,000 when the rider is bought."),
    ("Heading2", "2. Care levels and monthly benefit"),
    (None, "The care level is set by a specialist physician, using the six activities of daily "
           "living (ADLs): eating, bathing, dressing, using the toilet, moving in and out of bed, "
           "and walking indoors. The monthly benefit is a percentage of the monthly sum insured:"),
    ("Heading2", "3. Initial care benefit"),
    (None, "When the first monthly benefit is paid, the rider also pays a one-off initial care "
           "benefit of 6 times the monthly sum insured. It is paid only once in the life of the rider."),
    ("Heading2", "4. Key conditions"),
    (None, "Elimination period: the insured must have been in a covered care level continuously "
           "for 60 days, confirmed by a specialist physician, before benefits start. No benefit is "
           "paid for the elimination period itself."),
    (None, "Maximum benefit period: at most 120 monthly payments (10 years) in total over the "
           "life of the rider."),
    (None, "Reassessment: the care level is reassessed every 12 months. If the level changes, the "
           "new percentage applies from the following month; if the insured no longer meets Care "
           "Level 1, payments stop and can restart later."),
    (None, "Waiver of premium: once monthly benefits start, the premiums of the rider and of the "
           "base policy are waived."),
    (None, "Entry age: 20 to 65 years. Cover continues to age 99."),
    ("Heading2", "5. Making a claim"),
    (None, "Send Form JM-CL-14 (Long-Term Care Status Assessment), completed by a specialist "
           "physician, with the other documents listed in zh-claim-documents.md. The target time "
           "for the first monthly payment is 20 working days after all documents are received "
           "(claims-procedure.md)."),
]
TABLE_AFTER = BODY[5][1]

TABLE = [
    ["Care level", "Assessment result", "Monthly benefit (% of monthly sum insured)",
     "Example: monthly sum insured NT$30,000"],
    ["Care Level 1", "Unable to perform 2 of the 6 ADLs", "40%", "NT$12,000 per month"],
    ["Care Level 2", "Unable to perform 3 or 4 of the 6 ADLs", "70%", "NT$21,000 per month"],
    ["Care Level 3", "Unable to perform 5 or 6 of the 6 ADLs, or severe dementia (CDR 2 or above)",
     "100%", "NT$30,000 per month"],
]


def run(text, bold=False):
    props = "<w:rPr><w:b/></w:rPr>" if bold else ""
    return f'<w:r>{props}<w:t xml:space="preserve">{escape(text)}</w:t></w:r>'


def para(text, style=None, bold=False):
    ppr = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{ppr}{run(text, bold)}</w:p>"


def table(rows):
    grid = "".join('<w:gridCol w:w="2400"/>' for _ in rows[0])
    out = ['<w:tbl><w:tblPr><w:tblStyle w:val="TableGrid"/><w:tblW w:w="0" w:type="auto"/>'
           f"</w:tblPr><w:tblGrid>{grid}</w:tblGrid>"]
    for i, row in enumerate(rows):
        cells = "".join(
            f'<w:tc><w:tcPr><w:tcW w:w="2400" w:type="dxa"/></w:tcPr>{para(c, bold=(i == 0))}</w:tc>'
            for c in row)
        out.append(f"<w:tr>{cells}</w:tr>")
    out.append("</w:tbl>")
    return "".join(out)


def document_xml():
    parts = [para(TITLE, "Heading1")]
    for style, text in BODY:
        parts.append(para(text, style))
        if text == TABLE_AFTER:
            parts.append(table(TABLE))
    body = "".join(parts)
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            f'<w:document xmlns:w="{W_NS}"><w:body>{body}'
            '<w:sectPr><w:pgSz w:w="11906" w:h="16838"/></w:sectPr></w:body></w:document>')


CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.wordprocessingml.document.main+xml"/>'
    '<Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.wordprocessingml.styles+xml"/>'
    '</Types>')

RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/>'
    '</Relationships>')

DOC_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/styles" Target="styles.xml"/>'
    '</Relationships>')


def style(style_id, name, size, based_on="Normal"):
    return (f'<w:style w:type="paragraph" w:styleId="{style_id}"><w:name w:val="{name}"/>'
            f'<w:basedOn w:val="{based_on}"/><w:next w:val="Normal"/><w:qFormat/>'
            f'<w:pPr><w:keepNext/><w:outlineLvl w:val="{0 if style_id == "Heading1" else 1}"/></w:pPr>'
            f'<w:rPr><w:b/><w:sz w:val="{size}"/></w:rPr></w:style>')


STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    f'<w:styles xmlns:w="{W_NS}">'
    '<w:style w:type="paragraph" w:default="1" w:styleId="Normal"><w:name w:val="Normal"/>'
    '<w:qFormat/></w:style>'
    + style("Heading1", "heading 1", 32) + style("Heading2", "heading 2", 26) +
    '<w:style w:type="table" w:styleId="TableGrid"><w:name w:val="Table Grid"/>'
    '<w:tblPr><w:tblBorders>'
    + "".join(f'<w:{side} w:val="single" w:sz="4" w:space="0" w:color="auto"/>'
              for side in ("top", "left", "bottom", "right", "insideH", "insideV")) +
    '</w:tblBorders></w:tblPr></w:style>'
    '</w:styles>')


def main():
    entries = [
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", RELS),
        ("word/document.xml", document_xml()),
        ("word/_rels/document.xml.rels", DOC_RELS),
        ("word/styles.xml", STYLES),
    ]
    with zipfile.ZipFile(OUT, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in entries:
            info = zipfile.ZipInfo(name, date_time=(2025, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, text.encode("utf-8"))
    print(f"wrote {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
