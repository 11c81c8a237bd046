#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn prose(s: &str) -> String {
    convert(s, Format::Prose).unwrap().0
}

fn json(s: &str) -> String {
    convert(s, Format::Json).unwrap().0
}

#[test]
fn simplified_prose_becomes_taiwan_traditional_with_taiwan_phrases() {
    assert_eq!(
        prose("这个软件需要优化，请检查网络设置。"),
        "這個軟體需要最佳化，請檢查網路設定。"
    );
    assert_eq!(prose("我们的鼠标和内存都坏了"), "我們的滑鼠和記憶體都壞了");
    let (_, changed) = convert("网络安全", Format::Prose).unwrap();
    assert!(changed);
    // A clause of shared characters follows the clause before it.
    assert_eq!(prose("这样，信息"), "這樣，資訊");
    assert_eq!(prose("這樣，信息"), "這樣，信息");
}

#[test]
fn traditional_clauses_are_left_as_written() {
    // OpenCC alone would write 臺北; a clause without Simplified-only characters is kept.
    let t = "請用一句話介紹台北。台北是臺灣的首都，人口約兩百五十萬。";
    let (out, changed) = convert(t, Format::Prose).unwrap();
    assert_eq!(out, t);
    assert!(!changed);
    // In a mixed answer only the Simplified clause changes.
    assert_eq!(
        prose("台北很熱鬧，这里有很多美食。"),
        "台北很熱鬧，這裡有很多美食。"
    );
}

#[test]
fn code_blocks_inline_code_and_urls_are_kept() {
    let t = "说明如下：\n```python\n# 这是注释\nprint(\"数据\")\n```\n运行 `打印机.py` 后，请看 https://zh.wikipedia.org/wiki/台湾 。";
    let out = prose(t);
    assert_eq!(
        out,
        "說明如下：\n```python\n# 这是注释\nprint(\"数据\")\n```\n執行 `打印机.py` 後，請看 https://zh.wikipedia.org/wiki/台湾 。"
    );
    // A stray backtick protects at most the rest of its line.
    assert_eq!(prose("a`b 这个\n这个"), "a`b 这个\n這個");
    // A fence opened with four backticks is closed only by four or more.
    assert_eq!(
        prose("````\n这\n```\n这\n````\n这"),
        "````\n这\n```\n这\n````\n這"
    );
}

#[test]
fn json_converts_string_values_only() {
    let t =
        r#"{"说明": "这个软件", "列表": ["信息", 1, {"数据": "网络"}], "转义": "\u8fd9个\n头发"}"#;
    assert_eq!(
        json(t),
        r#"{"说明": "這個軟體", "列表": ["資訊", 1, {"数据": "網路"}], "转义": "\u8fd9個\n頭髮"}"#
    );
    // Arrays of objects: keys after commas stay keys.
    assert_eq!(
        json(r#"[{"这":"这"},{"这":"这"}]"#),
        r#"[{"这":"這"},{"这":"這"}]"#
    );
}

#[test]
fn a_phrase_split_across_chunks_converts_as_a_whole() {
    let mut c = Converter::new(Format::Prose).unwrap();
    let mut out = String::new();
    for piece in ["这个软", "件需要优", "化。下"] {
        out.push_str(&c.push(piece));
    }
    assert_eq!(out, "這個軟體需要最佳化。");
    out.push_str(&c.finish());
    assert_eq!(out, "這個軟體需要最佳化。下");
    // English is not held back at all.
    let mut c = Converter::new(Format::Prose).unwrap();
    assert_eq!(c.push("Hello"), "Hello");
}

#[test]
fn detection_counts_script_only_characters() {
    assert_eq!(
        Counts::of("請用一句話介紹台北。").script(),
        Script::Traditional
    );
    assert_eq!(Counts::of("台北是台湾的首都").script(), Script::Simplified);
    assert_eq!(Counts::of("中文").script(), Script::Undetermined);
    assert_eq!(Counts::of("hello").script(), Script::None);
    assert!(has_simplified("台湾"));
    assert!(!has_simplified("台灣"));
}

#[test]
fn the_character_sets_agree_with_the_converter() {
    let data = |s: &'static str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(str::chars)
            .collect::<Vec<char>>()
    };
    let simplified = data(include_str!("../data/simplified_only.txt"));
    let traditional = data(include_str!("../data/traditional_only.txt"));
    assert!(simplified.len() > 3000 && traditional.len() > 3000);
    let cc =
        ferrous_opencc::OpenCC::from_config(ferrous_opencc::config::BuiltinConfig::S2twp).unwrap();
    let unchanged: Vec<char> = simplified
        .iter()
        .copied()
        .filter(|c| cc.convert(&c.to_string()) == c.to_string())
        .collect();
    assert!(
        unchanged.is_empty(),
        "Simplified-only yet unconverted: {unchanged:?}"
    );
    assert!(simplified.iter().all(|c| !is_traditional_only(*c)));
    assert!(traditional.iter().all(|c| !is_simplified_only(*c)));
}

const TEXTS: &[&str] = &[
    "这个软件需要优化，请检查网络设置。台北很熱鬧，这里有很多美食。",
    "说明：\n```\n代码 `x`\n```\n运行 `打印机` 后请看 http://例子.com/数据 谢谢",
    r#"{"说明": "这个软件", "列表": ["信息", 1], "转义": "\"头发\"\n"}"#,
];

proptest! {
    /// Streamed in any pieces, the output is the whole conversion, and what is held back
    /// never exceeds HOLD_MAX characters.
    #[test]
    fn streaming_equals_whole(which in 0..TEXTS.len(), cuts in proptest::collection::vec(0usize..80, 0..8)) {
        let text = TEXTS[which];
        let format = if which == 2 { Format::Json } else { Format::Prose };
        let whole = convert(text, format).unwrap().0;
        let chars: Vec<char> = text.chars().collect();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(chars.len())).collect();
        cuts.sort_unstable();
        let mut c = Converter::new(format).unwrap();
        let mut out = String::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([chars.len()]) {
            let piece: String = chars[at..cut].iter().collect();
            out.push_str(&c.push(&piece));
            prop_assert!(c.held() <= HOLD_MAX);
            at = cut;
        }
        out.push_str(&c.finish());
        prop_assert_eq!(out, whole);
    }

    /// Any input: no panic, and text without Simplified-only characters is unchanged.
    #[test]
    fn never_panics_and_keeps_text_without_simplified(s in "\\PC{0,60}") {
        for f in [Format::Prose, Format::Json] {
            let (out, changed) = convert(&s, f).unwrap();
            if !has_simplified(&s) {
                prop_assert_eq!(&out, &s);
                prop_assert!(!changed);
            }
        }
    }
}

#[test]
fn urls_after_punctuation_and_in_parentheses_are_kept() {
    assert_eq!(
        prose("链接:https://zh.wikipedia.org/wiki/数据 这个"),
        "連結:https://zh.wikipedia.org/wiki/数据 這個"
    );
    assert_eq!(
        prose("见(https://x.com/数据)这个软件"),
        "見(https://x.com/数据)這個軟體"
    );
    // Tilde fences are code too.
    assert_eq!(prose("~~~\n这\n~~~\n这"), "~~~\n这\n~~~\n這");
}
