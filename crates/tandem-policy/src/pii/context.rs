//! Personal data without a checksum — names, postal addresses, dates of birth, and policy /
//! claim / medical-record / bank-account numbers — found by their shape next to the words
//! that introduce them. A date is a date of birth only after (or just before) a word of
//! birth; a number is a record number only after the name of its record; a Chinese name is
//! a known surname plus one or two characters after a role (被保險人、姓名…) or before a
//! title (先生、小姐…). Precision and recall on the sets in `eval/pii/` are in
//! docs/routing.md.

use std::sync::OnceLock;

use regex::Regex;

use super::PiiKind;

/// Surnames (Taiwan's most common, compound ones first; Simplified forms too).
const SURNAMES: &str = "歐陽|司馬|諸葛|上官|張簡|范姜|司徒|端木|欧阳|诸葛|张简|\
    陳|林|黃|黄|張|李|王|吳|劉|蔡|楊|許|鄭|謝|洪|郭|邱|曾|廖|賴|徐|周|葉|蘇|莊|呂|江|何|蕭|羅|高|\
    潘|簡|朱|鍾|游|彭|詹|胡|施|沈|余|盧|梁|趙|顏|柯|翁|魏|孫|戴|范|方|宋|鄧|杜|傅|侯|曹|薛|丁|卓|\
    阮|馬|董|溫|温|唐|藍|石|蔣|古|紀|姚|連|馮|歐|程|湯|田|康|姜|白|汪|鄒|尤|巫|鐘|黎|涂|龔|嚴|韓|\
    袁|金|童|陸|夏|柳|凃|邵|錢|伍|倪|于|譚|駱|熊|任|甘|秦|顧|毛|章|官|萬|俞|雷|粘|饒|\
    陈|张|吴|刘|杨|郑|谢|赖|叶|苏|庄|吕|萧|罗|钟|卢|赵|颜|孙|邓|马|蓝|蒋|纪|连|冯|欧|汤|邹|龚|\
    严|韩|陆|钱|谭|骆|顾|万|饶";

/// Characters that end a Chinese name (particles, verbs and titles that follow one).
const NAME_STOP: &str =
    "的是在於于与與和及為为已將将被向對对從从把等之先女君請请說说要想有申辦办來来去到等";

/// Titles after a Chinese name.
const TITLES: [&str; 7] = ["先生", "小姐", "女士", "太太", "醫師", "醫生", "律師"];

/// Roles before a Chinese name, which may follow directly (被保險人王小明).
const ROLES_ZH: &str = "被保險人|被保险人|要保人|受益人|姓名|病患|聯絡人|联系人|申請人|申请人|負責人|负责人|\
    持卡人|戶名|户名|立書人|委託人|委托人|法定代理人|收件人|寄件人";

/// Roles that are also ordinary words (客戶高度關注): the name must follow a colon, 為 or 是.
const WEAK_ROLES_ZH: &str = "保戶|保户|患者|病人|客戶|客户|配偶|承辦人|經辦人|本人";

struct Res {
    name_role: Regex,
    name_weak_role: Regex,
    name_title: Regex,
    name_en_title: Regex,
    name_en_role: Regex,
    addr_tw: Regex,
    addr_en: Regex,
    dates: Vec<(Regex, DateOrder)>,
    birth: Regex,
    record: Regex,
}

/// How a date pattern's numbers are ordered (for range checks).
#[derive(Clone, Copy)]
enum DateOrder {
    Ymd,
    Dmy,
    /// English month name then day and year.
    MonthDy,
    /// Day, English month name, year.
    DMonthY,
}

#[allow(clippy::expect_used)]
fn re(p: &str) -> Regex {
    // Constant patterns covered by the tests.
    Regex::new(p).expect("PII context pattern must compile")
}

fn res() -> &'static Res {
    static R: OnceLock<Res> = OnceLock::new();
    R.get_or_init(|| {
        let given = format!("[\\p{{Han}}--[{NAME_STOP}，。、：:；！？（）「」]]");
        let months = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)";
        let en_word = r"(?:[A-Z]'[A-Z][a-z]+|[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?)";
        // Admin units, road names: Han characters that are not a unit, a particle or a verb.
        let a = "[\\p{Han}--[在住於的是到至往由從自為和與及寄送地址縣市區鄉鎮村里路街段巷弄號樓這那條我你他她請]]";
        Res {
            name_role: re(&format!(
                r"(?:{ROLES_ZH})(?:[ \t]*[：:][ \t]*|[ \t]*(?:為|为|是|叫)[ \t]*|[ \t]*)({SURNAMES})({given}{{1,2}})"
            )),
            name_weak_role: re(&format!(
                r"(?:{WEAK_ROLES_ZH})(?:[ \t]*[：:][ \t]*|[ \t]*(?:為|为|是|叫)[ \t]*)({SURNAMES})({given}{{1,2}})"
            )),
            name_title: re(&format!(
                r"({SURNAMES})({given}{{0,2}}?)(?:{})",
                TITLES.join("|")
            )),
            name_en_title: re(&format!(
                r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?[ \t]+({en_word}(?:[ \t]+{en_word}){{0,2}})"
            )),
            name_en_role: re(&format!(
                r"\b(?i:full name|name|patient|insured|policyholder|policy holder|beneficiary|claimant|applicant|cardholder|account holder|my name is|named)[ \t]*[:：,]?[ \t]+({en_word}(?:[ \t]+[A-Z]\.)?(?:[ \t]+{en_word}){{1,2}})"
            )),
            addr_tw: re(&format!(
                r"(?:[0-9]{{3}}(?:[0-9]{{2,3}})?[ \t]?)?(?:{a}{{1,3}}[縣市])?(?:{a}{{1,3}}[區鄉鎮市])?(?:{a}{{1,3}}[村里])?(?:[0-9]+鄰)?{a}{{1,5}}(?:路|街|大道)(?:[一二三四五六七八九十0-9]+段)?(?:[0-9]+巷)?(?:[0-9]+弄)?[0-9]+(?:之[0-9]+)?號(?:之[0-9]+)?(?:[0-9]+樓(?:之[0-9]+)?)?"
            )),
            addr_en: re(
                r"\b[0-9]{1,6}[ \t]+(?:[A-Z][a-z]+[ \t]+){1,4}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Parkway|Pkwy|Highway|Hwy)\b(?:,?[ \t]*(?:Apt|Suite|Ste|Unit|#)\.?[ \t]*[A-Za-z0-9-]+)?(?:,[ \t]*[A-Z][a-z]+(?:[ \t][A-Z][a-z]+)*,[ \t]*[A-Z]{2}[ \t]+[0-9]{5}(?:-[0-9]{4})?)?",
            ),
            dates: vec![
                (re(r"(?:民國|民国)?[ \t]*[0-9]{2,4}[ \t]*年[ \t]*[0-9]{1,2}[ \t]*月[ \t]*[0-9]{1,2}[ \t]*[日號号]?"), DateOrder::Ymd),
                (re(r"[0-9]{2,4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}"), DateOrder::Ymd),
                (re(r"[0-9]{1,2}[-/.][0-9]{1,2}[-/.][0-9]{4}"), DateOrder::Dmy),
                (re(&format!(r"{months}\.?[ \t]+[0-9]{{1,2}}(?:st|nd|rd|th)?,?[ \t]+[0-9]{{4}}")), DateOrder::MonthDy),
                (re(&format!(r"[0-9]{{1,2}}(?:st|nd|rd|th)?[ \t]+{months}\.?,?[ \t]+[0-9]{{4}}")), DateOrder::DMonthY),
            ],
            birth: re(r"生日|出生|生於|生于|誕生|(?i:date of birth|birth ?date|birthday|\bdob\b|d\.o\.b\.|\bborn\b)"),
            record: re(
                r"(?:保單號碼|保單編號|保單號|保单号码|保单号|理賠編號|理賠案號|理賠號碼|理赔编号|案件編號|案號|病歷號碼|病歷編號|病歷號|病历号|帳戶號碼|銀行帳號|存摺帳號|帳號|账号|帳戶|账户|戶號|會員編號|客戶編號|(?i:policy[ \t]*(?:number|no\.?|#)|claim[ \t]*(?:number|no\.?|#)|medical[ \t]+record[ \t]*(?:number|no\.?|#)?|\bmrn\b|account[ \t]*(?:number|no\.?|#)|\bacct\.?[ \t]*(?:no\.?|#)?|\ba/c\b|member[ \t]*id|customer[ \t]*(?:number|id)))[ \t]*[:：#]?[ \t]*(?:(?:is|was|為|为|是)[ \t]*[:：]?[ \t]*)?([A-Za-z0-9][A-Za-z0-9-]{4,29})",
            ),
        }
    })
}

/// Appends the spans of `kind` found in `text` (already normalised: full-width → ASCII).
pub(super) fn find(kind: PiiKind, text: &str, push: &mut impl FnMut((usize, usize))) {
    let r = res();
    match kind {
        PiiKind::PersonName => names(r, text, push),
        // Cheap checks first: the patterns have no literal prefix to search for.
        PiiKind::Address => {
            if text.contains('號') {
                for m in r.addr_tw.find_iter(text) {
                    // Digits glued to the left belong to something else (a phone number):
                    // the postal code is not taken from them.
                    let mut start = m.start();
                    if start > 0 && text.as_bytes()[start - 1].is_ascii_digit() {
                        start += text[start..m.end()]
                            .find(|c: char| !c.is_ascii_digit() && c != ' ' && c != '\t')
                            .unwrap_or(0);
                    }
                    push((start, m.end()));
                }
            }
            if text.bytes().any(|b| b.is_ascii_digit()) {
                for m in r.addr_en.find_iter(text) {
                    push((m.start(), m.end()));
                }
            }
        }
        PiiKind::DateOfBirth => {
            if !r.birth.is_match(text) {
                return;
            }
            for (re, order) in &r.dates {
                for m in re.find_iter(text) {
                    if ascii_bounds(text, m.start(), m.end())
                        && date_ok(m.as_str(), *order)
                        && birth_near(r, text, m.start(), m.end())
                    {
                        push((trim_start(text, m.start(), m.end()), m.end()));
                    }
                }
            }
        }
        PiiKind::RecordNumber => {
            for c in r.record.captures_iter(text) {
                let (Some(all), Some(v)) = (c.get(0), c.get(1)) else {
                    continue;
                };
                let digits = v.as_str().bytes().filter(u8::is_ascii_digit).count();
                if digits >= 4 && left_word_ok(text, all.start()) && right_word_ok(text, v.end()) {
                    push((v.start(), v.end()));
                }
            }
        }
        _ => {}
    }
}

fn names(r: &Res, text: &str, push: &mut impl FnMut((usize, usize))) {
    for c in r
        .name_role
        .captures_iter(text)
        .chain(r.name_weak_role.captures_iter(text))
    {
        let (Some(s), Some(g)) = (c.get(1), c.get(2)) else {
            continue;
        };
        // A title inside the given part ends the name (姓名：王小姐 → 王; 王明先生 → 王明).
        let mut end = g.end();
        for (i, _) in text[s.end()..g.end()].char_indices() {
            if TITLES.iter().any(|t| text[s.end() + i..].starts_with(t)) {
                end = s.end() + i;
                break;
            }
        }
        push((s.start(), end));
    }
    if TITLES.iter().any(|t| text.contains(t)) {
        for c in r.name_title.captures_iter(text) {
            if let (Some(s), Some(g)) = (c.get(1), c.get(2)) {
                push((s.start(), g.end()));
            }
        }
    }
    for re in [&r.name_en_title, &r.name_en_role] {
        for c in re.captures_iter(text) {
            if let Some(n) = c.get(1) {
                push((n.start(), n.end()));
            }
        }
    }
}

/// A word of birth in the 16 characters before the date or the 8 after it.
fn birth_near(r: &Res, text: &str, s: usize, e: usize) -> bool {
    let start = text[..s]
        .char_indices()
        .rev()
        .take(16)
        .last()
        .map_or(s, |(i, _)| i);
    let end = text[e..]
        .char_indices()
        .nth(8)
        .map_or(text.len(), |(i, _)| e + i);
    r.birth.is_match(&text[start..s]) || r.birth.is_match(&text[e..end])
}

/// Month 1–12 and day 1–31, read in the pattern's order.
fn date_ok(s: &str, order: DateOrder) -> bool {
    let nums: Vec<u32> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect();
    let (m, d) = match (order, nums.as_slice()) {
        (DateOrder::Ymd, [_, m, d]) => (*m, *d),
        // 05/01/1980 is ambiguous: either reading may be the month.
        (DateOrder::Dmy, [a, b, _]) => {
            if *a <= 12 {
                (*a, *b)
            } else {
                (*b, *a)
            }
        }
        (DateOrder::MonthDy, [d, _]) | (DateOrder::DMonthY, [d, _]) => (1, *d),
        _ => return false,
    };
    (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// Leading spaces (the patterns allow them after 民國) are not part of the value.
fn trim_start(text: &str, s: usize, e: usize) -> usize {
    s + (text[s..e].len() - text[s..e].trim_start().len())
}

fn ascii_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn ascii_bounds(text: &str, s: usize, e: usize) -> bool {
    let b = text.as_bytes();
    (s == 0 || !(b[s - 1].is_ascii_digit() || b[s - 1] == b'/' || b[s - 1] == b'-'))
        && (e == b.len() || !(b[e].is_ascii_digit() || b[e] == b'/' || b[e] == b'-'))
}

fn left_word_ok(text: &str, s: usize) -> bool {
    s == 0 || !ascii_word(text.as_bytes()[s - 1])
}

fn right_word_ok(text: &str, e: usize) -> bool {
    e == text.len() || !ascii_word(text.as_bytes()[e])
}
