#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------
// Independent generators for valid values (they do not use the module's own checks).
// ---------------------------------------------------------------------------------------

/// Letters in the order of their codes 10..=35 (A=10 … H=17, J=18 … V=29, X=30, Y=31,
/// W=32, Z=33, I=34, O=35).
const TW_LETTERS: &str = "ABCDEFGHJKLMNPQRSTUVXYWZIO";

fn tw_code(letter: char) -> u32 {
    10 + TW_LETTERS.find(letter).unwrap() as u32
}

/// Check digit for a Taiwan number: letter, value of the second position, seven digits.
fn tw_check_digit(letter: char, second_value: u32, seven: &[u32; 7]) -> u32 {
    let c = tw_code(letter);
    let mut sum = c / 10 + (c % 10) * 9 + second_value * 8;
    for (d, w) in seven.iter().zip([7, 6, 5, 4, 3, 2, 1]) {
        sum += d * w;
    }
    (10 - sum % 10) % 10
}

fn digits_str(d: &[u32]) -> String {
    d.iter()
        .map(|x| char::from_digit(*x, 10).unwrap())
        .collect()
}

/// National ID: letter, 1 or 2, seven digits, check digit.
fn make_tw_id(letter: char, sex: u32, seven: [u32; 7]) -> String {
    let check = tw_check_digit(letter, sex, &seven);
    format!("{letter}{sex}{}{check}", digits_str(&seven))
}

/// New resident certificate (2021+): letter, 8 or 9, seven digits, check digit.
fn make_arc_new(letter: char, second: u32, seven: [u32; 7]) -> String {
    let check = tw_check_digit(letter, second, &seven);
    format!("{letter}{second}{}{check}", digits_str(&seven))
}

/// Old resident certificate: letter, A–D, seven digits, check digit; the second letter counts
/// as the last digit of its code.
fn make_arc_old(letter: char, second: char, seven: [u32; 7]) -> String {
    let check = tw_check_digit(letter, tw_code(second) % 10, &seven);
    format!("{letter}{second}{}{check}", digits_str(&seven))
}

/// Appends the Luhn check digit to `payload`.
fn luhn_complete(payload: &str) -> String {
    let sum: u32 = payload
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    format!("{payload}{}", (10 - sum % 10) % 10)
}

/// An IBAN with correct check digits for `country` and `bban`.
fn make_iban(country: &str, bban: &str) -> String {
    let rearranged = format!("{bban}{country}00");
    let mut rem = 0u32;
    for c in rearranged.chars() {
        let v = c.to_digit(36).unwrap();
        rem = if v < 10 {
            (rem * 10 + v) % 97
        } else {
            (rem * 100 + v) % 97
        };
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

fn group4(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn found(text: &str) -> Vec<(PiiKind, String)> {
    Detector::new()
        .detect(text)
        .into_iter()
        .map(|f| (f.kind, text[f.start..f.end].to_string()))
        .collect()
}

#[track_caller]
fn assert_finds(text: &str, kind: PiiKind, value: &str) {
    let got = found(text);
    assert!(
        got.iter().any(|(k, v)| *k == kind && v == value),
        "expected {kind:?} {value:?} in {text:?}, got {got:?}"
    );
}

#[track_caller]
fn assert_no(text: &str, kind: PiiKind) {
    let got = found(text);
    assert!(
        got.iter().all(|(k, _)| *k != kind),
        "expected no {kind:?} in {text:?}, got {got:?}"
    );
}

#[track_caller]
fn assert_nothing(text: &str) {
    let got = found(text);
    assert!(got.is_empty(), "expected nothing in {text:?}, got {got:?}");
}

/// (text, value expected to be found with `kind`); the value may be the whole text.
fn check_positives(kind: PiiKind, cases: &[(&str, &str)]) {
    for (text, value) in cases {
        assert_finds(text, kind, value);
        // The same value alone, and wrapped in Chinese text with full-width punctuation.
        assert_finds(value, kind, value);
        let zh = format!("資料如下：{value}，謝謝。");
        assert_finds(&zh, kind, value);
    }
}

// ---------------------------------------------------------------------------------------
// PiiKind
// ---------------------------------------------------------------------------------------

#[test]
fn kind_names_round_trip() {
    for k in PiiKind::ALL {
        assert_eq!(PiiKind::parse(k.as_str()), Some(k));
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(json, format!("\"{}\"", k.as_str()));
        let back: PiiKind = serde_json::from_str(&json).unwrap();
        assert_eq!(back, k);
        assert!(!k.placeholder_tag().is_empty());
    }
    assert_eq!(PiiKind::parse("nope"), None);
    assert_eq!(PiiKind::TwNationalId.placeholder_tag(), "TW_ID");
    assert_eq!(PiiKind::CreditCard.as_str(), "credit_card");
    let tags: std::collections::HashSet<_> =
        PiiKind::ALL.iter().map(|k| k.placeholder_tag()).collect();
    assert_eq!(tags.len(), PiiKind::ALL.len());
}

#[test]
fn detector_is_send_sync_and_restricted_by_kind() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Detector>();
    assert_send_sync::<Masker>();
    assert_send_sync::<StreamRestorer>();

    let text = "mail a@example.com or call 0912-345-678";
    let only_email = Detector::with_kinds(&[PiiKind::Email]).detect(text);
    assert_eq!(only_email.len(), 1);
    assert_eq!(only_email[0].kind, PiiKind::Email);
    assert!(Detector::with_kinds(&[]).detect(text).is_empty());
    assert_eq!(Detector::default().detect(text).len(), 2);
    assert_eq!(
        Detector::with_kinds(&[PiiKind::Phone]).kinds(),
        vec![PiiKind::Phone]
    );
}

// ---------------------------------------------------------------------------------------
// Per kind: positives, near misses, must-not-match
// ---------------------------------------------------------------------------------------

#[test]
fn email() {
    check_positives(
        PiiKind::Email,
        &[
            (
                "contact john.doe@example.com please",
                "john.doe@example.com",
            ),
            (
                "我的信箱是mary_lin+tw@mail.example.com.tw，謝謝",
                "mary_lin+tw@mail.example.com.tw",
            ),
            ("<a.b-c@sub.domain.org>", "a.b-c@sub.domain.org"),
            ("mailto:X_Y%z@EXAMPLE.IO.", "X_Y%z@EXAMPLE.IO"),
        ],
    );
    // Full-width @ and dot.
    assert_finds(
        "信箱ａｂｃ＠ｅｘａｍｐｌｅ．ｃｏｍ。",
        PiiKind::Email,
        "ａｂｃ＠ｅｘａｍｐｌｅ．ｃｏｍ",
    );
    for text in [
        "a@b",
        "user@localhost",
        "@example.com",
        "foo@bar",
        "name@domain.c",
        "see @handle on x.com",
        "a@b.com1",
    ] {
        assert_no(text, PiiKind::Email);
    }
}

#[test]
fn phone() {
    check_positives(
        PiiKind::Phone,
        &[
            ("call +1 (415) 555-0132 today", "+1 (415) 555-0132"),
            ("London +44 20 7946 0958.", "+44 20 7946 0958"),
            ("+886 912 345 678", "+886 912 345 678"),
            ("+886-2-2345-6789", "+886-2-2345-6789"),
            ("+886 2 2345 6789 分機 12", "+886 2 2345 6789"),
            ("+33.1.23.45.67.89", "+33.1.23.45.67.89"),
            ("電話0912-345-678。", "0912-345-678"),
            ("手機：0912345678", "0912345678"),
            ("0912 345 678", "0912 345 678"),
            ("台北 (02) 2345-6789", "(02) 2345-6789"),
            ("(02)23456789", "(02)23456789"),
            ("02-2345-6789", "02-2345-6789"),
            ("台中04-2345-6789", "04-2345-6789"),
            ("高雄07-123-4567", "07-123-4567"),
            ("苗栗037-123456", "037-123456"),
            ("office (415) 555-0132", "(415) 555-0132"),
            ("415-555-0132", "415-555-0132"),
            ("415.555.0132", "415.555.0132"),
            ("1-415-555-0132", "1-415-555-0132"),
        ],
    );
    // The phone number is not extended by a following number.
    assert_finds("+886 912 345 678 2024", PiiKind::Phone, "+886 912 345 678");
    // Full-width digits and dashes; offsets refer to the original text.
    assert_finds(
        "電話：０９１２－３４５－６７８。",
        PiiKind::Phone,
        "０９１２－３４５－６７８",
    );
    for text in [
        "2024-01-15",
        "on 2024-01-15 at 12:30:45",
        "version 1.2.3",
        "v10.15.7",
        "order 20240115123456",
        "12:30:45",
        "3.14159265358979",
        "1+2345678",
        "+1 555",
        "09123456789",
        "x0912345678",
        "0912-345-6789",
        "415-555-01324",
        "415-555.0132",
        "02-2345-678",
        "09-2345-6789",
        "ISBN 978-3-16-148410-0",
    ] {
        assert_no(text, PiiKind::Phone);
    }
}

#[test]
fn credit_card() {
    check_positives(
        PiiKind::CreditCard,
        &[
            ("visa 4111 1111 1111 1111 exp 12/25", "4111 1111 1111 1111"),
            ("4111-1111-1111-1111", "4111-1111-1111-1111"),
            ("卡號4111111111111111，到期12/25", "4111111111111111"),
            ("4012888888881881", "4012888888881881"),
            ("4222222222222", "4222222222222"),
            ("mc 5500 0000 0000 0004", "5500 0000 0000 0004"),
            ("5555555555554444", "5555555555554444"),
            ("2223 0000 4840 0011", "2223 0000 4840 0011"),
            ("amex 3782 822463 10005", "3782 822463 10005"),
            ("340000000000009", "340000000000009"),
            ("6011111111111117", "6011111111111117"),
            ("JCB 3530111333300000", "3530111333300000"),
            ("銀聯6200000000000005", "6200000000000005"),
        ],
    );
    // A number after the card is not part of it; two cards in a row are two findings.
    assert_finds(
        "4111 1111 1111 1111 2024",
        PiiKind::CreditCard,
        "4111 1111 1111 1111",
    );
    let two = found("4111 1111 1111 1111 5500 0000 0000 0004");
    assert_eq!(two.len(), 2, "{two:?}");
    // Generated numbers for every issuer.
    for payload in [
        "411111111111111",
        "520000000000000",
        "272000000000000",
        "37144963539843",
        "601100000000000",
        "650000000000000",
        "356600000000000",
        "622126000000000",
        "622126000000000000",
    ] {
        let card = luhn_complete(payload);
        assert_finds(&format!("card: {card}."), PiiKind::CreditCard, &card);
    }
    for text in [
        "4111 1111 1111 1112",             // Luhn fails
        "4111111111111112",                // Luhn fails
        "1234567812345670",                // Luhn ok, no issuer
        "9111111111111111",                // no issuer
        "41111111111111111111",            // 20 digits
        "x4111111111111111",               // glued to a word
        "41111111111111110",               // longer run
        "4111.1111.1111.1111",             // not a card separator
        "4111 1111-1111 1111",             // mixed separators
        "order 20240115123456789",         // order number
        "378282246310006",                 // Amex prefix, Luhn fails
        &luhn_complete("560000000000000"), // 56 is not Mastercard
    ] {
        assert_no(text, PiiKind::CreditCard);
    }
}

#[test]
fn iban() {
    check_positives(
        PiiKind::Iban,
        &[
            (
                "IBAN DE89 3704 0044 0532 0130 00",
                "DE89 3704 0044 0532 0130 00",
            ),
            ("DE89370400440532013000", "DE89370400440532013000"),
            ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
            ("帳號GB82WEST12345698765432。", "GB82WEST12345698765432"),
            (
                "FR14 2004 1010 0505 0001 3M02 606",
                "FR14 2004 1010 0505 0001 3M02 606",
            ),
            ("NL91ABNA0417164300", "NL91ABNA0417164300"),
            ("CH9300762011623852957", "CH9300762011623852957"),
            ("BE68539007547034", "BE68539007547034"),
        ],
    );
    assert_finds(
        "DE89 3704 0044 0532 0130 00 AND MORE",
        PiiKind::Iban,
        "DE89 3704 0044 0532 0130 00",
    );
    let generated = [
        make_iban("DE", "500105175407324931"),
        make_iban("GB", "NWBK60161331926819"),
        make_iban("ES", "21000418450200051332"),
        make_iban("IT", "X0542811101000000123456"),
        make_iban("ZZ", "123456789012345"), // not in the table: generic 15–34
    ];
    for iban in &generated {
        assert_finds(&format!("iban: {iban}"), PiiKind::Iban, iban);
        let spaced = group4(iban);
        assert_finds(&format!("iban: {spaced}"), PiiKind::Iban, &spaced);
    }
    for text in [
        "DE88 3704 0044 0532 0130 00", // wrong check digits
        "DE88370400440532013000",
        "GB82 WEST 1234 5698 7654 33", // wrong last digit
        "DE89 3704 0044 0532 0130 0",  // too short for DE
        "DE8937040044053201300012",    // too long for DE
        "DE89 37040 044 0532 0130 00", // wrong grouping
        "xDE89370400440532013000",
        "ORDER AB12 3456 7890 1234",
    ] {
        assert_no(text, PiiKind::Iban);
    }
}

#[test]
fn tw_national_id() {
    check_positives(
        PiiKind::TwNationalId,
        &[
            (
                "我的身分證字號是A123456789，電話0912-345-678。",
                "A123456789",
            ),
            ("ID: A123456789.", "A123456789"),
        ],
    );
    let generated = [
        make_tw_id('F', 1, [2, 3, 4, 5, 6, 7, 8]),
        make_tw_id('I', 2, [0, 0, 0, 0, 0, 0, 1]),
        make_tw_id('O', 1, [9, 9, 9, 9, 9, 9, 9]),
        make_tw_id('W', 2, [1, 3, 5, 7, 9, 2, 4]),
        make_tw_id('Z', 1, [5, 0, 5, 0, 5, 0, 5]),
    ];
    for id in &generated {
        assert_finds(&format!("身分證：{id}"), PiiKind::TwNationalId, id);
        // Change the check digit: must fail.
        let mut bad = id.clone();
        let last = bad.pop().unwrap().to_digit(10).unwrap();
        bad.push(char::from_digit((last + 1) % 10, 10).unwrap());
        assert_no(&bad, PiiKind::TwNationalId);
    }
    for text in [
        "A123456788",  // checksum
        "A323456789",  // second digit must be 1 or 2
        "xA123456789", // glued to a word
        "A1234567890", // longer run
        "A12345678",   // too short
        "1A123456789",
        "A123456789x",
    ] {
        assert_no(text, PiiKind::TwNationalId);
    }
}

#[test]
fn tw_resident_cert() {
    check_positives(
        PiiKind::TwResidentCert,
        &[
            ("居留證號碼FA12345689。", "FA12345689"),
            ("ARC no. AA00000009", "AA00000009"),
            ("統一證號A800000014", "A800000014"),
        ],
    );
    let generated = [
        make_arc_new('A', 8, [0, 0, 0, 0, 0, 0, 1]),
        make_arc_new('Y', 9, [1, 2, 3, 4, 5, 6, 7]),
        make_arc_new('I', 8, [7, 6, 5, 4, 3, 2, 1]),
        make_arc_old('F', 'A', [1, 2, 3, 4, 5, 6, 8]),
        make_arc_old('T', 'B', [0, 2, 4, 6, 8, 1, 3]),
        make_arc_old('H', 'C', [9, 8, 7, 6, 5, 4, 3]),
        make_arc_old('O', 'D', [1, 1, 1, 1, 1, 1, 1]),
    ];
    assert_eq!(generated[3], "FA12345689");
    for arc in &generated {
        assert_finds(&format!("居留證：{arc}"), PiiKind::TwResidentCert, arc);
        let mut bad = arc.clone();
        let last = bad.pop().unwrap().to_digit(10).unwrap();
        bad.push(char::from_digit((last + 3) % 10, 10).unwrap());
        assert_no(&bad, PiiKind::TwResidentCert);
    }
    for text in [
        "FA12345688", // checksum
        "FE12345689", // second letter must be A–D
        "A700000014", // second digit must be 8 or 9
        "xA800000014",
        "A8000000140",
    ] {
        assert_no(text, PiiKind::TwResidentCert);
    }
}

#[test]
fn us_ssn() {
    check_positives(
        PiiKind::UsSsn,
        &[
            ("SSN: 536-22-1234", "536-22-1234"),
            ("ssn 536 22 1234", "536 22 1234"),
            ("my social security number is 536-22-1234.", "536-22-1234"),
        ],
    );
    // Bare nine digits need a context word shortly before.
    assert_finds("SSN 536221234", PiiKind::UsSsn, "536221234");
    assert_finds("Social Security No. 536221234", PiiKind::UsSsn, "536221234");
    assert_finds("社會安全號碼：536221234", PiiKind::UsSsn, "536221234");
    for text in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "536-00-1234",
        "536-22-0000",
        "536221234",
        "order 536221234",
        "SSN was mentioned a long time ago in this text: 536221234",
        "536-22 1234",
        "1536-22-1234",
        "536-22-12345",
        "2024-01-15",
    ] {
        assert_no(text, PiiKind::UsSsn);
    }
}

#[test]
fn ip_address() {
    check_positives(
        PiiKind::IpAddress,
        &[
            ("server 192.168.1.10 is down", "192.168.1.10"),
            ("connect to 10.0.0.1:8080", "10.0.0.1"),
            ("DNS 8.8.8.8.", "8.8.8.8"),
            ("route 10.0.0.0/8", "10.0.0.0"),
            ("255.255.255.255", "255.255.255.255"),
            ("IPv6 2001:db8::1 here", "2001:db8::1"),
            (
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            ),
            ("fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a"),
            ("mapped ::ffff:192.0.2.128", "::ffff:192.0.2.128"),
            ("http://[2001:db8::1]:443/", "2001:db8::1"),
            ("blocked 2001:db8::7: retry", "2001:db8::7"),
        ],
    );
    for text in [
        "version 1.2.3.4.5",
        "1.2.3.4.5",
        "v1.2.3.4",
        "256.1.1.1",
        "1.2.3",
        "01.02.03.04",
        "12:30:45",
        "at 12:30:45.",
        "00:1A:2B:3C:4D:5E",
        "std::io::Result",
        "dead::beef",
        "::",
        "2024-01-15",
    ] {
        assert_no(text, PiiKind::IpAddress);
    }
}

#[test]
fn api_key() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    check_positives(
        PiiKind::ApiKey,
        &[
            (
                "key sk-proj-Abc123XyZ789LmNoPqRsTuVwX ok",
                "sk-proj-Abc123XyZ789LmNoPqRsTuVwX",
            ),
            (
                "OPENAI_API_KEY=sk-Abc123XyZ789LmNoPqRsTuVwX",
                "sk-Abc123XyZ789LmNoPqRsTuVwX",
            ),
            (
                "sk-ant-api03-AbCdEf123456GhIjKl7890MnOp",
                "sk-ant-api03-AbCdEf123456GhIjKl7890MnOp",
            ),
            (
                "token ghp_1234567890abcdefghijABCDEFGHIJ123456",
                "ghp_1234567890abcdefghijABCDEFGHIJ123456",
            ),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            ),
            ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
            ("xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
            (
                "AIzaSyA1234567890abcdefghijklmnopqrstuv",
                "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            ),
            (jwt, jwt),
        ],
    );
    // Only the secret is reported, not the key name or `Bearer`.
    assert_finds(
        "Authorization: Bearer abcDEF123456ghiJKL789",
        PiiKind::ApiKey,
        "abcDEF123456ghiJKL789",
    );
    assert_finds(
        &format!("Authorization: Bearer {jwt}"),
        PiiKind::ApiKey,
        jwt,
    );
    assert_finds(
        "api_key=Zx8Qw3Lm9Tr5Vb2Nk7Hy4Pd6",
        PiiKind::ApiKey,
        "Zx8Qw3Lm9Tr5Vb2Nk7Hy4Pd6",
    );
    assert_finds(
        r#"{"token": "aB3dE5gH7jK9mN1pQ3sT5vW7"}"#,
        PiiKind::ApiKey,
        "aB3dE5gH7jK9mN1pQ3sT5vW7",
    );
    assert_finds(
        "X-API-KEY: 9f8e7d6c5b4a39281706f5e4d3c2b1a0.",
        PiiKind::ApiKey,
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    );
    assert_finds(
        "我的金鑰 client_secret：Qm9zc2EtNzc3LVNlY3JldC1LZXk",
        PiiKind::ApiKey,
        "Qm9zc2EtNzc3LVNlY3JldC1LZXk",
    );
    for text in [
        "sk-this-is-not-a-real-key-at-all",
        "task-1234567890abcdefghijKLMN",
        "api_key=your_api_key_goes_here_now",
        "token: aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "password = 11111111112222222222",
        "Bearer token",
        "the bearer of bad news",
        "AKIAIOSFODNN7EXAMPL",
        "AKIAIOSFODNN7EXAMPLEX",
        "ghp_short",
        "eyJhbGciOiJIUzI1NiJ9",
    ] {
        assert_no(text, PiiKind::ApiKey);
    }
}

#[test]
fn ordinary_text_has_no_findings() {
    for text in [
        "",
        "Hello, world! Meeting on 2024-01-15 at 12:30:45, room 101.",
        "Release v2.10.3 (build 20240115.1) fixes #12345 and bumps 1.2.3.4.5.",
        "訂單編號 20240115000123，金額 NT$12,345，數量 3。",
        "The ratio is 3.14159 and pi*r^2 = 78.54; see [1] and [note].",
        "Call me maybe [EMAIL] [PHONE_] [_1] ]][[",
        "fn main() { let x = std::env::args(); }",
        "Order #A-1234-5678 shipped; tracking 1Z999AA10123456784.",
        "temperature 36.5°C at 07:45, 50% humidity",
    ] {
        assert_nothing(text);
    }
}

#[test]
fn overlaps_keep_the_longer_value() {
    // An e-mail whose local part looks like an ID and a phone number.
    let text = "A123456789.0912345678@example.com";
    assert_eq!(found(text), vec![(PiiKind::Email, text.to_string())]);
    // Digits of an IBAN also pass as a card run; the IBAN wins.
    let iban = "DE89 3704 0044 0532 0130 00";
    assert_eq!(found(iban), vec![(PiiKind::Iban, iban.to_string())]);
    // IPv4-mapped IPv6 is one finding.
    assert_eq!(found("::ffff:192.0.2.128").len(), 1);
}

// ---------------------------------------------------------------------------------------
// Offsets
// ---------------------------------------------------------------------------------------

#[test]
fn offsets_with_cjk_before_values() {
    let text = "我的身分證字號是A123456789，電話0912-345-678。";
    let f = Detector::new().detect(text);
    assert_eq!(
        f,
        vec![
            Finding {
                kind: PiiKind::TwNationalId,
                start: 24,
                end: 34,
                char_start: 8,
                char_end: 18,
            },
            Finding {
                kind: PiiKind::Phone,
                start: 43,
                end: 55,
                char_start: 21,
                char_end: 33,
            },
        ]
    );
    for x in &f {
        let by_chars: String = text
            .chars()
            .skip(x.char_start)
            .take(x.char_end - x.char_start)
            .collect();
        assert_eq!(by_chars, &text[x.start..x.end]);
    }
}

#[test]
fn offsets_with_full_width_digits() {
    let text = "電話：０９１２３４５６７８。信箱ａ＠ｂｃ．ｃｏｍ";
    let f = Detector::new().detect(text);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].kind, PiiKind::Phone);
    assert_eq!(&text[f[0].start..f[0].end], "０９１２３４５６７８");
    assert_eq!((f[0].start, f[0].end), (9, 39));
    assert_eq!((f[0].char_start, f[0].char_end), (3, 13));
    assert_eq!(f[1].kind, PiiKind::Email);
    assert_eq!(&text[f[1].start..f[1].end], "ａ＠ｂｃ．ｃｏｍ");
    assert_eq!((f[1].char_start, f[1].char_end), (16, 24));
}

// ---------------------------------------------------------------------------------------
// Masking and restoring
// ---------------------------------------------------------------------------------------

fn mask_all(m: &mut Masker, text: &str) -> String {
    let f = Detector::new().detect(text);
    m.mask(text, &f)
}

#[test]
fn same_value_same_placeholder() {
    let mut m = Masker::new();
    assert!(m.is_empty());
    let text = "a@x.com, b@y.com, a@x.com; 我的身分證字號是A123456789，電話0912-345-678。";
    let masked = mask_all(&mut m, text);
    assert_eq!(
        masked,
        "[EMAIL_1], [EMAIL_2], [EMAIL_1]; 我的身分證字號是[TW_ID_1]，電話[PHONE_1]。"
    );
    assert_eq!(m.len(), 4);
    assert!(!m.is_empty());
    assert_eq!(
        m.kinds(),
        vec![PiiKind::Email, PiiKind::Phone, PiiKind::TwNationalId]
    );
    assert_eq!(m.restore(&masked), text);
    // A later message of the same conversation reuses the numbers.
    let masked2 = mask_all(&mut m, "again b@y.com and c@z.org");
    assert_eq!(masked2, "again [EMAIL_2] and [EMAIL_3]");
    assert_eq!(
        m.restore("[EMAIL_3] wrote to [EMAIL_1]"),
        "c@z.org wrote to a@x.com"
    );
}

#[test]
fn restore_leaves_unknown_and_literal_brackets() {
    let mut m = Masker::new();
    let masked = mask_all(&mut m, "mail a@x.com");
    assert_eq!(masked, "mail [EMAIL_1]");
    for text in [
        "[EMAIL_2] [email_1] [EMAIL_1 ] [ EMAIL_1] [[EMAIL_1 [x] []",
        "no brackets at all",
        "]]][[[",
        "中文[括號]內容【EMAIL_1】",
    ] {
        assert_eq!(m.restore(text), text);
    }
    assert_eq!(m.restore("[[EMAIL_1]]"), "[a@x.com]");
    assert_eq!(m.restore("x[EMAIL_1][EMAIL_1]y"), "xa@x.coma@x.comy");
    // An empty masker restores nothing.
    assert_eq!(Masker::new().restore("[EMAIL_1]"), "[EMAIL_1]");
}

#[test]
fn literal_placeholders_in_input_are_not_reused() {
    let mut m = Masker::new();
    let text = "literal [EMAIL_1] and [EMAIL_2] then real a@x.com";
    let masked = mask_all(&mut m, text);
    assert_eq!(
        masked,
        "literal [EMAIL_1] and [EMAIL_2] then real [EMAIL_3]"
    );
    assert_eq!(m.restore(&masked), text);
}

#[test]
fn mask_ignores_bad_findings() {
    let mut m = Masker::new();
    let text = "é a@x.com";
    let mut f = Detector::new().detect(text);
    f.push(Finding {
        kind: PiiKind::Phone,
        start: 1, // inside "é"
        end: 2,
        char_start: 0,
        char_end: 1,
    });
    f.push(Finding {
        kind: PiiKind::Phone,
        start: 4, // overlaps the e-mail
        end: 6,
        char_start: 3,
        char_end: 5,
    });
    f.push(Finding {
        kind: PiiKind::Phone,
        start: 5,
        end: 500, // out of range
        char_start: 0,
        char_end: 0,
    });
    assert_eq!(m.mask(text, &f), "é [EMAIL_1]");
}

#[test]
fn debug_does_not_leak_values() {
    let mut m = Masker::new();
    let masked = mask_all(
        &mut m,
        "a.secret@example.com A123456789 sk-proj-Abc123XyZ789LmNoPqRsTuVwX",
    );
    assert_eq!(masked, "[EMAIL_1] [TW_ID_1] [SECRET_1]");
    let dbg = format!("{m:?} {:?}", m.stream_restorer());
    for v in ["a.secret", "example", "A123456789", "Abc123"] {
        assert!(!dbg.contains(v), "{dbg}");
    }
    let detector = format!("{:?}", Detector::new());
    assert!(detector.contains("Email"));
}

#[test]
fn stream_restorer_joins_split_placeholders() {
    let mut m = Masker::new();
    mask_all(&mut m, "a@x.com 0912-345-678");
    let mut r = m.stream_restorer();
    assert_eq!(r.push("Mail [EMA"), "Mail ");
    assert_eq!(r.push("IL_1] is"), "a@x.com is");
    assert_eq!(r.push(" ok ["), " ok ");
    assert_eq!(r.push("PHONE_1"), "");
    assert_eq!(r.push("]."), "0912-345-678.");
    // Not a placeholder prefix: released at once.
    assert_eq!(r.push(" see [x"), " see [x");
    assert_eq!(r.push(" [EMAIL_1"), " ");
    assert_eq!(r.push("0]"), "[EMAIL_10]");
    assert_eq!(r.push("[EMAIL_2"), "[EMAIL_2");
    assert_eq!(r.push(" [PHO"), " ");
    assert_eq!(r.finish(), "[PHO");
    assert_eq!(r.finish(), "");
    // One character at a time.
    let masked = "[EMAIL_1][PHONE_1] [[EMAIL_1]] 中[文]";
    let mut r = m.stream_restorer();
    let mut out = String::new();
    for c in masked.chars() {
        out.push_str(&r.push(&c.to_string()));
    }
    out.push_str(&r.finish());
    assert_eq!(out, m.restore(masked));
    assert_eq!(out, "a@x.com0912-345-678 [a@x.com] 中[文]");
}

#[test]
fn stream_restorer_without_placeholders_holds_nothing() {
    let m = Masker::new();
    let mut r = m.stream_restorer();
    assert_eq!(r.push("[EMAIL_1"), "[EMAIL_1");
    assert_eq!(r.push("["), "[");
    assert_eq!(r.finish(), "");
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

fn seven_digits() -> impl Strategy<Value = [u32; 7]> {
    prop::array::uniform7(0u32..10)
}

fn tw_letter() -> impl Strategy<Value = char> {
    prop::sample::select(TW_LETTERS.chars().collect::<Vec<_>>())
}

fn pii_value() -> impl Strategy<Value = (PiiKind, String)> {
    prop_oneof![
        (
            "[a-z][a-z0-9]{0,8}(\\.[a-z0-9]{1,5})?",
            "[a-z]{1,10}",
            "(com|org|tw|com\\.tw|io)"
        )
            .prop_map(|(l, d, t)| (PiiKind::Email, format!("{l}@{d}.{t}"))),
        ("[0-9]{2}", "[0-9]{3}", "[0-9]{3}", 0usize..3).prop_map(|(a, b, c, f)| {
            let sep = ["-", " ", ""][f];
            (PiiKind::Phone, format!("09{a}{sep}{b}{sep}{c}"))
        }),
        (
            prop::sample::select(vec!["4", "51", "55", "2221", "37", "6011", "3530", "62"]),
            any::<u64>()
        )
            .prop_map(|(p, n)| {
                let len = match p {
                    "37" => 15,
                    _ => 16,
                };
                let mut payload = format!("{p}{n:020}");
                payload.truncate(len - 1);
                (PiiKind::CreditCard, luhn_complete(&payload))
            }),
        ("[0-9]{18}", any::<bool>()).prop_map(|(b, spaced)| {
            let iban = make_iban("DE", &b);
            (PiiKind::Iban, if spaced { group4(&iban) } else { iban })
        }),
        (tw_letter(), 1u32..=2, seven_digits())
            .prop_map(|(l, s, d)| (PiiKind::TwNationalId, make_tw_id(l, s, d))),
        (tw_letter(), 8u32..=9, seven_digits())
            .prop_map(|(l, s, d)| (PiiKind::TwResidentCert, make_arc_new(l, s, d))),
        (
            tw_letter(),
            prop::sample::select(vec!['A', 'B', 'C', 'D']),
            seven_digits()
        )
            .prop_map(|(l, s, d)| (PiiKind::TwResidentCert, make_arc_old(l, s, d))),
        (1u32..900, 1u32..100, 1u32..10000)
            .prop_filter("area 666", |(a, _, _)| *a != 666)
            .prop_map(|(a, g, s)| (PiiKind::UsSsn, format!("{a:03}-{g:02}-{s:04}"))),
        any::<[u8; 4]>()
            .prop_map(|o| { (PiiKind::IpAddress, std::net::Ipv4Addr::from(o).to_string()) }),
        any::<[u16; 8]>()
            .prop_map(|g| std::net::Ipv6Addr::from(g).to_string())
            // Documented limits: at least two groups and a decimal digit.
            .prop_filter("too short or no digit", |s| {
                s.bytes().any(|b| b.is_ascii_digit())
                    && s.split(':').filter(|g| !g.is_empty()).count() >= 2
            })
            .prop_map(|s| (PiiKind::IpAddress, s)),
        "[A-Za-z0-9]{36}".prop_map(|s| (PiiKind::ApiKey, format!("ghp_{s}"))),
        "[A-Z0-9]{16}".prop_map(|s| (PiiKind::ApiKey, format!("AKIA{s}"))),
    ]
}

/// Arbitrary text, including CJK, brackets and literal placeholders.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ,.:;@+()\\-]{0,12}",
        "[一-龥，。：（）]{0,6}",
        "[\\[\\]A-Z_0-9]{0,10}",
        Just("[EMAIL_1]".to_string()),
        Just("[PHONE_1".to_string()),
        Just("]".to_string()),
        "\\PC{0,8}",
    ]
}

/// Text safe around values: no ASCII letters or digits, so every value stands alone.
fn calm_fragment() -> impl Strategy<Value = String> {
    prop_oneof!["[一-龥]{0,6}", "[ ，。！？「」]{0,4}"]
}

fn split_at_chars(s: &str, cuts: &[prop::sample::Index]) -> Vec<String> {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let mut at: Vec<usize> = cuts.iter().map(|c| *c.get(&bounds)).collect();
    at.push(0);
    at.push(s.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| s[w[0]..w[1]].to_string()).collect()
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=… for a longer run.
    #[test]
    fn prop_mask_restore_round_trip(
        parts in prop::collection::vec((fragment(), prop::option::of(pii_value())), 0..8),
        tail in fragment(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut text = String::new();
        for (frag, value) in &parts {
            text.push_str(frag);
            if let Some((_, v)) = value {
                text.push_str(v);
            }
        }
        text.push_str(&tail);

        let findings = Detector::new().detect(&text);
        for w in findings.windows(2) {
            prop_assert!(w[0].end <= w[1].start);
        }
        for f in &findings {
            prop_assert!(text.get(f.start..f.end).is_some());
            prop_assert_eq!(text[..f.start].chars().count(), f.char_start);
            prop_assert_eq!(text[..f.end].chars().count(), f.char_end);
        }
        let mut m = Masker::new();
        let masked = m.mask(&text, &findings);
        let restored = m.restore(&masked);
        prop_assert_eq!(&restored, &text);

        let mut r = m.stream_restorer();
        let mut streamed = String::new();
        for chunk in split_at_chars(&masked, &cuts) {
            streamed.push_str(&r.push(&chunk));
        }
        streamed.push_str(&r.finish());
        prop_assert_eq!(&streamed, &restored);
    }

    #[test]
    fn prop_generated_values_are_found_and_masked(
        parts in prop::collection::vec((calm_fragment(), pii_value()), 1..6),
        tail in calm_fragment(),
    ) {
        let mut text = String::new();
        for (frag, (_, v)) in &parts {
            text.push_str(frag);
            text.push('，');
            text.push_str(v);
            text.push('，');
        }
        text.push_str(&tail);
        let got = found(&text);
        for (_, (kind, v)) in &parts {
            prop_assert!(
                got.iter().any(|(k, g)| k == kind && g == v),
                "{:?} {:?} not found in {:?}: {:?}", kind, v, text, got
            );
        }
        let mut m = Masker::new();
        let masked = mask_all(&mut m, &text);
        for (_, (_, v)) in &parts {
            prop_assert!(!masked.contains(v.as_str()), "{:?} left in {:?}", v, masked);
        }
        prop_assert_eq!(m.restore(&masked), text);
    }
}

// ---------------------------------------------------------------------------------------
// Performance sanity (prints, does not assert)
// ---------------------------------------------------------------------------------------

#[test]
fn detect_speed_on_2kb_mixed_text() {
    let chunk = "Hi team, 我的身分證字號是A123456789，電話0912-345-678。Please mail \
                 john.doe@example.com or call +1 (415) 555-0132. Release v2.10.3 on \
                 2024-01-15 12:30:45; server 192.168.1.10, card 4111 1111 1111 1111. ";
    let mut text = String::new();
    while text.len() < 2048 {
        text.push_str(chunk);
    }
    let d = Detector::new();
    let warm = d.detect(&text);
    assert!(!warm.is_empty());
    let n = 200;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(d.detect(std::hint::black_box(&text)));
    }
    let per = t.elapsed() / n;
    println!(
        "detect on {} bytes: {:?} per call, {} findings",
        text.len(),
        per,
        warm.len()
    );
}

#[test]
fn pathological_inputs_finish() {
    let d = Detector::new();
    let inputs = [
        "1".repeat(50_000),
        "1 ".repeat(25_000),
        "1-".repeat(25_000),
        "1.".repeat(25_000),
        "1:".repeat(25_000),
        "a.".repeat(25_000) + "@b.com1",
        "a+".repeat(25_000) + "@b.com1",
        "sk-".repeat(16_000),
        "+1 ".repeat(16_000),
        "[".repeat(50_000),
        "A1".repeat(25_000),
        "DE89".repeat(12_000),
        "０".repeat(20_000),
    ];
    for text in &inputs {
        let t = std::time::Instant::now();
        let findings = d.detect(text);
        let mut m = Masker::new();
        let masked = m.mask(text, &findings);
        assert_eq!(&m.restore(&masked), text);
        println!(
            "{:>6} bytes starting {:?}: {:?}, {} findings",
            text.len(),
            &text[..6],
            t.elapsed(),
            findings.len()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Over-strict validation fixed; names, addresses, dates of birth, record numbers
// ---------------------------------------------------------------------------------------

#[test]
fn ssn_shaped_numbers_next_to_ssn_words_are_masked_whatever_their_area() {
    // The gateway-conformance case: area 993 next to "SSN".
    assert_finds("SSN: 993-42-4706", PiiKind::UsSsn, "993-42-4706");
    assert_finds(
        "ITIN 912-70-1234 for the filing",
        PiiKind::UsSsn,
        "912-70-1234",
    );
    assert_finds("993-42-4706 is my SSN", PiiKind::UsSsn, "993-42-4706");
    assert_finds("taxpayer id 666-12-3456", PiiKind::UsSsn, "666-12-3456");
    assert_finds("社會安全號碼 900123456", PiiKind::UsSsn, "900123456");
    // Without the words, the range rules still keep other numbers alone.
    assert_no("ticket 993-42-4706", PiiKind::UsSsn);
}

#[test]
fn stripe_keys_are_secrets() {
    for key in [
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUv",
        "rk_live_51H8xYzAbCdEfGhIjKlMnOp",
        "rk_test_abcdefghijklmnop1234",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ] {
        assert_finds(&format!("STRIPE_KEY={key}"), PiiKind::ApiKey, key);
        assert_finds(&format!("金鑰是{key}。"), PiiKind::ApiKey, key);
    }
    for text in ["sk_test_short", "task_test_value_only", "desk_live_webcam"] {
        assert_no(text, PiiKind::ApiKey);
    }
}

#[test]
fn names_addresses_birth_dates_and_record_numbers_in_context() {
    assert_finds("被保險人王小明申請理賠", PiiKind::PersonName, "王小明");
    assert_finds("姓名：王小姐", PiiKind::PersonName, "王");
    assert_finds("請陳先生回電", PiiKind::PersonName, "陳");
    assert_finds("Mr. John Smith", PiiKind::PersonName, "John Smith");
    assert_no("這位先生請稍等", PiiKind::PersonName);
    assert_no("客戶高度關注", PiiKind::PersonName);
    assert_finds(
        "地址：台北市信義區松仁路100號5樓",
        PiiKind::Address,
        "台北市信義區松仁路100號5樓",
    );
    assert_finds(
        "lives at 221 Baker Street.",
        PiiKind::Address,
        "221 Baker Street",
    );
    assert_no("請沿著中山路直走", PiiKind::Address);
    assert_finds(
        "出生日期：民國72年5月3日",
        PiiKind::DateOfBirth,
        "民國72年5月3日",
    );
    assert_finds("DOB 1962-11-30", PiiKind::DateOfBirth, "1962-11-30");
    assert_no("會議在2024年3月5日舉行", PiiKind::DateOfBirth);
    assert_no("出生日期：2024年13月5日", PiiKind::DateOfBirth);
    assert_finds(
        "保單號碼：A123-456-7890",
        PiiKind::RecordNumber,
        "A123-456-7890",
    );
    assert_finds("MRN 7654321", PiiKind::RecordNumber, "7654321");
    assert_no("請問保單號碼在哪裡查", PiiKind::RecordNumber);
    assert_no("帳號請設定為英文字母", PiiKind::RecordNumber);
    // Full-width digits and punctuation are normalised first.
    assert_finds(
        "保單號碼：Ａ１２３４５６７",
        PiiKind::RecordNumber,
        "Ａ１２３４５６７",
    );
}

#[test]
fn new_kinds_mask_and_restore_in_streams_and_json_arguments() {
    let mut m = Masker::new();
    let text = "被保險人王小明，住台北市信義區松仁路100號5樓，出生日期：民國72年5月3日，保單號碼：P2023998877";
    let masked = mask_all(&mut m, text);
    assert_eq!(
        masked,
        "被保險人[NAME_1]，住[ADDRESS_1]，出生日期：[DOB_1]，保單號碼：[RECORD_1]"
    );
    assert_eq!(m.restore(&masked), text);
    // Streamed, placeholders split anywhere, in text and in a tool call's JSON arguments.
    let answer = "{\"insured\": \"[NAME_1]\", \"address\": \"[ADDRESS_1]\", \"dob\": \"[DOB_1]\", \"policy\": \"[RECORD_1]\"}";
    let chars: Vec<char> = answer.chars().collect();
    for step in [1, 2, 3, 5, 7] {
        let mut r = m.stream_restorer();
        let mut out = String::new();
        for piece in chars.chunks(step) {
            out.push_str(&r.push(&piece.iter().collect::<String>()));
        }
        out.push_str(&r.finish());
        assert_eq!(
            out,
            "{\"insured\": \"王小明\", \"address\": \"台北市信義區松仁路100號5樓\", \"dob\": \"民國72年5月3日\", \"policy\": \"P2023998877\"}"
        );
    }
}

#[test]
fn ids_and_cards_next_to_their_names_are_masked_even_when_their_checksum_fails() {
    // A typo in the last digit: not a valid ID, still someone's ID.
    assert_finds(
        "身分證字號：A123456788",
        PiiKind::TwNationalId,
        "A123456788",
    );
    assert_finds(
        "national ID A123456788",
        PiiKind::TwNationalId,
        "A123456788",
    );
    assert_finds(
        "居留證號碼FA12345688",
        PiiKind::TwResidentCert,
        "FA12345688",
    );
    assert_finds(
        "信用卡號 4111 1111 1111 1112",
        PiiKind::CreditCard,
        "4111 1111 1111 1112",
    );
    assert_finds(
        "card number 5500-0000-0000-0005",
        PiiKind::CreditCard,
        "5500-0000-0000-0005",
    );
    // Without the words, the checksums still keep other codes and numbers alone.
    assert_no("訂單 A123456788", PiiKind::TwNationalId);
    assert_no("FA12345688", PiiKind::TwResidentCert);
    assert_no("tracking 4111 1111 1111 1112", PiiKind::CreditCard);
    assert_no("卡號 12345", PiiKind::CreditCard);
}

#[test]
fn context_words_stand_alone_and_addresses_leave_glued_digits_alone() {
    // "writing" has no ITIN in it, "search" no ARC, "discard" no card.
    assert_no("writing 993-42-4706", PiiKind::UsSsn);
    assert_no("search FA12345688", PiiKind::TwResidentCert);
    assert_no("discard 4111 1111 1111 1112", PiiKind::CreditCard);
    // A phone number glued to an address keeps its own finding.
    assert_finds(
        "0912345678台北市信義區松仁路1號",
        PiiKind::Phone,
        "0912345678",
    );
    assert_finds(
        "0912345678台北市信義區松仁路1號",
        PiiKind::Address,
        "台北市信義區松仁路1號",
    );
}

#[test]
fn an_iban_with_wrong_check_digits_next_to_iban_is_masked() {
    // GB82 WEST 1234 5698 7654 32 is valid; 83 breaks its check digits.
    assert_finds(
        "IBAN: GB83 WEST 1234 5698 7654 32",
        PiiKind::Iban,
        "GB83 WEST 1234 5698 7654 32",
    );
    assert_no("ref GB83 WEST 1234 5698 7654 32", PiiKind::Iban);
}
